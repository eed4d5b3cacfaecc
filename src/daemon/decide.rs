//! Whether a model in a drop folder needs measuring, and with which job
//! spec (the config's, `Config::job_spec`).
//!
//! A report is current when it describes the model file as it is now (same
//! sha256), the same settings file (same sha256, or none) and, for a report
//! that says ok, what the config would measure now (precisions, budget,
//! confidence target, threads, and an operator profile when `profile` is on). A failed report stays current until the
//! model or its settings change: measuring a corrupt file again at every
//! restart would help nobody. The exception is a failure precisiond retries
//! (a crash, a time-out: the report holds `attempts`), which is measured
//! again when the caller asks for retries. Deleting a report asks for a new
//! measurement.
//!
//! Hashes come from the cache (`crate::daemon::hashcache`): this runs on the
//! daemon's helper threads, never on the thread that pings the watchdog.
//!
//! Nothing here follows a symlink: a link in the drop folder is never read,
//! whether it stands for a model, its settings or its report.

use crate::config::Config;
use crate::daemon::hashcache::HashCache;
use crate::supervise;
use precisiond_core::devices::{Device, DeviceRequest};
use precisiond_core::fsutil::{open_regular, sha256_of};
use precisiond_core::job::JobSpec;
use precisiond_core::precision::Precision;
use precisiond_core::report::{self, Report, Status};
use precisiond_core::settings::{self, ModelSettings};
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Debug)]
pub enum Decision {
    /// Nothing to do; the words say why (for the log).
    Skip(String),
    /// Measure it as this spec says.
    Run(Box<JobSpec>),
    /// Do not read it: write this failed report beside it instead.
    Reject(Box<Report>),
}

/// What a decision needs besides the model.
pub struct Inputs<'a> {
    pub config: &'a Config,
    pub hashes: &'a HashCache,
    /// Measure again a model whose report holds a failure worth retrying.
    pub retry_failures: bool,
}

pub fn decide(model: &Path, inputs: &Inputs) -> Decision {
    let config = inputs.config;
    let meta = match std::fs::symlink_metadata(model) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Decision::Skip("it was deleted".into())
        }
        Err(e) => return Decision::Skip(format!("cannot look at it: {e}")),
    };
    if meta.file_type().is_symlink() {
        return Decision::Skip(
            "it is a symbolic link, and precisiond never follows links in a drop folder; \
             copy the model itself into the folder"
                .into(),
        );
    }
    if !meta.is_file() {
        return Decision::Skip("it is not a regular file".into());
    }
    if let Some((head, precision)) = precisiond_core::aoti::variant_of(model) {
        return Decision::Skip(format!(
            "it is the {precision} package of {}'s family, measured with it into its report",
            facts_name(&head)
        ));
    }
    let report_path = report::default_path(model);
    let current = supervise::load_report(&report_path).ok();
    if meta.len() > config.max_model_bytes {
        // Rejected unread, so the report carries no sha256; it stays
        // current as long as the size does.
        if let Some(r) = &current {
            if r.status == Status::Failed
                && r.model.sha256.is_empty()
                && r.model.bytes == meta.len()
            {
                return Decision::Skip("it is over the size limit, as its report says".into());
            }
        }
        let error = format!(
            "the model file is {} bytes, over the limit of {} bytes (max_model_bytes in the \
             precisiond config); it was not read. Raise max_model_bytes and reload precisiond \
             (systemctl reload precisiond), then delete this report to measure it",
            meta.len(),
            config.max_model_bytes
        );
        return reject(model, String::new(), meta.len(), error, config);
    }
    let settings_path = settings::default_path(model);
    match std::fs::symlink_metadata(&settings_path) {
        Ok(m) if !m.is_file() => {
            let error = format!(
                "the settings file {} is {}; precisiond never follows links in a drop folder. \
                 Replace it with a regular file",
                facts_name(&settings_path),
                if m.file_type().is_symlink() {
                    "a symbolic link"
                } else {
                    "not a regular file"
                },
            );
            let Ok((sha, bytes)) = inputs.hashes.sha256(model) else {
                return Decision::Skip("it cannot be read".into());
            };
            if let Some(r) = &current {
                if r.status == Status::Failed
                    && r.model.sha256 == sha
                    && r.model.settings_sha256.is_none()
                {
                    return Decision::Skip(
                        "its settings file is a link, as its report says".into(),
                    );
                }
            }
            return reject(model, sha, bytes, error, config);
        }
        _ => {}
    }
    // The config was checked when it was loaded, with the same bounds.
    let spec = match config.job_spec(model) {
        Ok(spec) => spec,
        Err(e) => return Decision::Skip(format!("the config cannot measure it: {e}")),
    };
    // Settings that do not parse are the worker's to report (as a failed
    // report that says what is wrong); here they only mean "no precisions".
    let model_settings = ModelSettings::load(&settings_path).ok();
    if let Some(r) = &current {
        if is_current(
            r,
            model,
            &settings_path,
            model_settings.as_ref(),
            &spec,
            inputs,
        ) {
            return Decision::Skip(
                "its report is current; delete the report to measure it again".into(),
            );
        }
    }
    Decision::Run(Box::new(spec))
}

fn facts_name(path: &Path) -> String {
    precisiond_core::fsutil::file_name(path)
}

fn reject(model: &Path, sha: String, bytes: u64, error: String, config: &Config) -> Decision {
    let mut r = supervise::failed_report_for(
        model,
        sha,
        bytes,
        error,
        report::now(),
        config.effective_threads(),
    );
    r.run.max_seconds = config.knobs.max_seconds;
    r.run.target_rel_ci = config.knobs.target_ci_percent / 100.0;
    Decision::Reject(Box::new(r))
}

fn is_current(
    r: &Report,
    model: &Path,
    settings_path: &Path,
    model_settings: Option<&ModelSettings>,
    spec: &JobSpec,
    inputs: &Inputs,
) -> bool {
    let Ok((sha, _)) = inputs.hashes.sha256(model) else {
        return false;
    };
    let settings_sha = open_regular(settings_path)
        .and_then(sha256_of)
        .ok()
        .map(|(sha, _)| sha);
    if r.model.sha256 != sha || r.model.settings_sha256 != settings_sha {
        return false;
    }
    if precisiond_core::aoti::is_pt2(model)
        && !variants_current(r, model, model_settings, inputs.hashes)
    {
        return false;
    }
    if r.status == Status::Failed {
        return !(inputs.retry_failures && r.attempts.is_some());
    }
    // What the worker would measure now, by the same rule it uses.
    let effective = spec.with_settings(&model_settings.cloned().unwrap_or_default());
    let wanted: BTreeSet<Precision> = effective.precisions.iter().copied().collect();
    let measured: BTreeSet<Precision> = r.results.iter().map(|x| x.precision).collect();
    // A report judged by other accuracy thresholds (or by none: written
    // before the verdict existed) is stale.
    wanted == measured
        && r.run.accuracy == Some(effective.accuracy)
        && devices_match(r, &effective.devices)
        && close(r.run.max_seconds, effective.bench.max_seconds)
        && close(r.run.target_rel_ci, effective.bench.target_rel_ci)
        && r.run.threads == spec.knobs.threads
        && (!spec.knobs.profile || has_profile_where_possible(r))
}

/// Whether an AOTInductor family's report lists exactly the packages of
/// its other precisions that are there now, each as it is now (a variant
/// dropped, replaced or deleted later brings the report up to date), and
/// the TorchScript model the settings link, as it is now.
fn variants_current(
    r: &Report,
    head: &Path,
    model_settings: Option<&ModelSettings>,
    hashes: &HashCache,
) -> bool {
    // The paths the settings name, resolved as the worker resolves them; a
    // refused one (a link, `..`) is the worker's to report.
    let dir = settings::SettingsDir::of(&settings::default_path(head), true);
    let named = model_settings.and_then(|s| s.variants.as_ref());
    let mut now = BTreeSet::new();
    for precision in precisiond_core::aoti::VARIANTS {
        let path = match named.and_then(|v| v.get(&precision)) {
            Some(p) => match dir.resolve(&format!("variants.{precision}"), p) {
                Ok(path) => path,
                Err(_) => return false,
            },
            None => precisiond_core::aoti::variant_path(head, precision),
        };
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => match hashes.sha256(&path) {
                Ok((sha, _)) => {
                    now.insert((precision, sha));
                }
                Err(_) => return false,
            },
            _ => {}
        }
    }
    let linked = model_settings.and_then(|s| s.torchscript.as_ref());
    let linked_now = match linked {
        Some(p) => match dir
            .resolve("torchscript", p)
            .map_err(|e| e.to_string())
            .and_then(|path| hashes.sha256(&path).map_err(|e| e.to_string()))
        {
            Ok((sha, _)) => Some(sha),
            Err(_) => return false,
        },
        None => None,
    };
    if linked_now != r.model.torchscript.as_ref().map(|t| t.sha256.clone()) {
        return false;
    }
    let measured: BTreeSet<(Precision, String)> = r
        .model
        .variants
        .iter()
        .map(|v| (v.precision, v.sha256.clone()))
        .collect();
    now == measured
}

/// With `profile` on, a report measured without it is measured again: it
/// is current when some result has a profile, or none could have one (a
/// profile comes with an ok result on the CPU). A profile turned off keeps
/// reports that have one: they are no less current for it.
fn has_profile_where_possible(r: &Report) -> bool {
    let could = r.results.iter().any(|x| {
        x.status == Status::Ok && x.device == Device::Cpu && x.method != report::Method::Tensorrt
    });
    !could || r.results.iter().any(|x| x.profile.is_some())
}

/// Whether the report covers the devices asked for. Only a list of named
/// devices can be checked here: "auto" and "cuda" depend on the GPUs
/// libtorch sees, which the supervisor does not ask (that would load the
/// CUDA driver into the daemon).
fn devices_match(r: &Report, requests: &[DeviceRequest]) -> bool {
    let mut wanted = BTreeSet::new();
    for request in requests {
        match request {
            DeviceRequest::Cpu => wanted.insert(Device::Cpu),
            DeviceRequest::Cuda(i) => wanted.insert(Device::Cuda(*i)),
            DeviceRequest::Auto | DeviceRequest::AllCuda => return true,
        };
    }
    let measured: BTreeSet<Device> = r.results.iter().map(|x| x.device).collect();
    wanted == measured
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn check(model: &Path, config: &Config) -> Decision {
        let hashes = HashCache::new();
        decide(
            model,
            &Inputs {
                config,
                hashes: &hashes,
                retry_failures: false,
            },
        )
    }

    #[test]
    fn a_failure_worth_retrying_runs_again_only_when_retries_are_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.pt");
        std::fs::write(&model, b"v1").unwrap();
        let config = Config::default();
        let hashes = HashCache::new();
        let mut r = supervise::failed_report(&model, "killed".into(), report::now(), 1);
        r.attempts = Some(3);
        precisiond_core::output::toml::write(&r, &report::default_path(&model)).unwrap();
        let with = |retry_failures| {
            decide(
                &model,
                &Inputs {
                    config: &config,
                    hashes: &hashes,
                    retry_failures,
                },
            )
        };
        assert!(matches!(with(false), Decision::Skip(_)));
        assert!(matches!(with(true), Decision::Run(_)));
        // A failure without attempts (the worker's own) is never retried.
        r.attempts = None;
        precisiond_core::output::toml::write(&r, &report::default_path(&model)).unwrap();
        assert!(matches!(with(true), Decision::Skip(_)));
    }

    #[test]
    fn a_family_report_is_stale_when_a_variant_or_the_linked_torchscript_changes() {
        let dir = tempfile::tempdir().unwrap();
        let head = dir.path().join("m.pt2");
        std::fs::write(&head, b"fp32 package").unwrap();
        let ts = dir.path().join("m.pt");
        std::fs::write(&ts, b"torchscript v1").unwrap();
        std::fs::write(dir.path().join("m.pt2.toml"), "torchscript = \"m.pt\"\n").unwrap();
        let config = Config::default();
        let hashes = HashCache::new();
        let (sha, bytes) = hashes.sha256(&head).unwrap();
        // A failed report the worker wrote itself stays current while
        // nothing it describes changes.
        let mut r = supervise::failed_report(&head, "bad".into(), report::now(), 1);
        r.model.sha256 = sha;
        r.model.bytes = bytes;
        r.model.settings_sha256 = Some(
            open_regular(&dir.path().join("m.pt2.toml"))
                .and_then(sha256_of)
                .unwrap()
                .0,
        );
        r.model.torchscript = Some(report::LinkedFile {
            file: "m.pt".into(),
            sha256: hashes.sha256(&ts).unwrap().0,
            bytes: 14,
        });
        precisiond_core::output::toml::write(&r, &report::default_path(&head)).unwrap();
        assert!(matches!(check(&head, &config), Decision::Skip(_)));
        // A BF16 package dropped beside it.
        let bf16 = dir.path().join("m.bf16.pt2");
        std::fs::write(&bf16, b"bf16 package").unwrap();
        assert!(matches!(check(&head, &config), Decision::Run(_)));
        // The variant itself is never measured on its own.
        assert!(matches!(check(&bf16, &config), Decision::Skip(_)));
        std::fs::remove_file(&bf16).unwrap();
        assert!(matches!(check(&head, &config), Decision::Skip(_)));
        // The linked TorchScript model replaced.
        std::fs::write(&ts, b"torchscript v2").unwrap();
        assert!(matches!(check(&head, &config), Decision::Run(_)));
    }

    #[test]
    fn missing_report_runs_and_symlinks_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.pt");
        std::fs::write(&model, b"not really a model").unwrap();
        let config = Config::default();
        assert!(matches!(check(&model, &config), Decision::Run(_)));
        let link = dir.path().join("link.pt");
        symlink(&model, &link).unwrap();
        assert!(matches!(check(&link, &config), Decision::Skip(_)));
        assert!(matches!(
            check(&dir.path().join("gone.pt"), &config),
            Decision::Skip(_)
        ));
    }

    #[test]
    fn oversize_is_rejected_unread_once() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("big.pt");
        std::fs::write(&model, vec![0u8; 100]).unwrap();
        let config = Config {
            max_model_bytes: 10,
            ..Config::default()
        };
        let Decision::Reject(r) = check(&model, &config) else {
            panic!("not rejected")
        };
        assert!(r.error.as_deref().unwrap().contains("max_model_bytes"));
        precisiond_core::output::toml::write(&r, &report::default_path(&model)).unwrap();
        assert!(matches!(check(&model, &config), Decision::Skip(_)));
    }

    #[test]
    fn failed_report_is_current_until_the_model_changes() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.pt");
        std::fs::write(&model, b"v1").unwrap();
        let config = Config::default();
        let r = supervise::failed_report(&model, "boom".into(), report::now(), 1);
        precisiond_core::output::toml::write(&r, &report::default_path(&model)).unwrap();
        assert!(matches!(check(&model, &config), Decision::Skip(_)));
        std::fs::write(&model, b"v2").unwrap();
        assert!(matches!(check(&model, &config), Decision::Run(_)));
        // A new settings file also makes it stale.
        std::fs::write(&model, b"v1").unwrap();
        std::fs::write(settings::default_path(&model), b"max_seconds = 1.0\n").unwrap();
        assert!(matches!(check(&model, &config), Decision::Run(_)));
    }

    #[test]
    fn a_report_judged_by_other_accuracy_thresholds_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.pt");
        std::fs::write(&model, b"v1").unwrap();
        let mut config = Config::default();
        config.knobs.precisions = vec![Precision::Fp32];
        let mut r = supervise::failed_report(&model, String::new(), report::now(), 1);
        r.status = Status::Ok;
        r.error = None;
        r.run.max_seconds = config.knobs.max_seconds;
        r.run.target_rel_ci = config.knobs.target_ci_percent / 100.0;
        r.run.threads = config.effective_threads();
        r.results.push(report::PrecisionResult::not_measured(
            precisiond_core::devices::Device::Cpu,
            Precision::Fp32,
            Status::Ok,
            report::Method::Cast,
            String::new(),
        ));
        let write =
            |r: &Report| precisiond_core::output::toml::write(r, &report::default_path(&model));
        // Written before the verdict existed: measured again.
        write(&r).unwrap();
        assert!(matches!(check(&model, &config), Decision::Run(_)));
        r.run.accuracy = Some(config.knobs.accuracy);
        write(&r).unwrap();
        assert!(matches!(check(&model, &config), Decision::Skip(_)));
        let mut stricter = config.clone();
        stricter.knobs.accuracy.min_cosine = 0.9999;
        assert!(matches!(check(&model, &stricter), Decision::Run(_)));
        // The settings file's [accuracy] is part of what the report must match.
        std::fs::write(
            settings::default_path(&model),
            b"[accuracy]\nmin_cosine = 0.9999\n",
        )
        .unwrap();
        assert!(matches!(check(&model, &config), Decision::Run(_)));
    }

    #[test]
    fn a_named_device_list_must_match_the_reports_devices() {
        let mut r = supervise::failed_report(
            Path::new("/nonexistent/m.pt"),
            String::new(),
            report::now(),
            1,
        );
        r.results.push(report::PrecisionResult::not_measured(
            precisiond_core::devices::Device::Cpu,
            Precision::Fp32,
            Status::Ok,
            report::Method::Cast,
            String::new(),
        ));
        assert!(devices_match(&r, &[DeviceRequest::Cpu]));
        assert!(
            !devices_match(&r, &[DeviceRequest::Cpu, DeviceRequest::Cuda(0)]),
            "cuda:0 was not measured"
        );
        assert!(
            devices_match(&r, &[DeviceRequest::Auto]),
            "auto cannot be checked here"
        );
    }

    #[test]
    fn with_profile_on_a_report_without_a_profile_is_measured_again() {
        let mut r = supervise::failed_report(
            Path::new("/nonexistent/m.pt"),
            String::new(),
            report::now(),
            1,
        );
        assert!(
            has_profile_where_possible(&r),
            "no result, nothing to profile"
        );
        r.results.push(report::PrecisionResult::not_measured(
            precisiond_core::devices::Device::Cpu,
            Precision::Fp32,
            Status::Ok,
            report::Method::Cast,
            String::new(),
        ));
        assert!(!has_profile_where_possible(&r));
        r.results[0].profile = Some(report::OperatorProfile {
            forward_calls: 1,
            wall_ms: 1.0,
            operators: Vec::new(),
            float_operators: None,
        });
        assert!(has_profile_where_possible(&r));
    }

    #[test]
    fn the_daemons_job_is_the_configs() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.pt");
        std::fs::write(&model, b"v1").unwrap();
        // The settings file's list is the worker's to apply: the spec names
        // none, so the file's wins over the config's.
        std::fs::write(settings::default_path(&model), "precisions = [\"fp32\"]\n").unwrap();
        let mut config = Config::default();
        config.knobs.build_timeout_seconds = 90.0;
        let Decision::Run(spec) = check(&model, &config) else {
            panic!("not run")
        };
        assert_eq!(*spec, config.job_spec(&model).unwrap());
        assert!(spec.precisions.is_none());
        assert_eq!(spec.knobs.precisions, config.knobs.precisions);
        assert_eq!(spec.state_dir, dir.path().join(".precisiond"));
        assert_eq!(spec.knobs.build_timeout_seconds, 90.0);
        assert_eq!(spec.timeout_seconds, Some(config.worker_timeout_seconds));
        assert!(spec.untrusted_folder);
    }
}
