//! An AOTInductor family: the FP32 package `NAME.pt2` that was asked for,
//! and the packages of its other precisions (`NAME.bf16.pt2`, ... beside
//! it, or where the settings file's `variants` says). Each package is read
//! once, hashed, inspected and judged against this machine here, before
//! libtorch loads any of them; loading goes through a private copy of the
//! very bytes that were hashed (`load`).

use crate::shim::AotiPackage;
use precisiond_core::aoti::{self, Metadata, Pt2, Target};
use precisiond_core::fsutil::{self, hex_sha256};
use precisiond_core::precision::Precision;
use precisiond_core::report::{PackageFacts, VariantFacts};
use precisiond_core::settings::{ModelSettings, OutsideDropFolder, SettingsDir};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One package of the family.
pub struct Variant {
    pub precision: Precision,
    /// As the report names it: the file name, or the settings file's path.
    pub file: String,
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub metadata: Metadata,
    /// Err: why this machine cannot run its compiled code.
    pub runnable: Result<(), aoti::CannotRun>,
}

impl Variant {
    pub fn facts(&self) -> PackageFacts {
        let get = |k: &str| self.metadata.get(k).map(str::to_owned);
        PackageFacts {
            file: self.file.clone(),
            cpu_isa: get(aoti::keys::CPU_ISA),
            device: self.metadata.device_key().to_owned(),
            compute_capability: get(aoti::keys::COMPUTE_CAPABILITY),
            exporter: get("precisiond.exporter"),
        }
    }

    /// The device kind its code runs on: "cpu" or "cuda".
    pub fn device_key(&self) -> &str {
        self.metadata.device_key()
    }
}

pub struct Family {
    /// The FP32 package: the model the job was asked for.
    pub head: Variant,
    /// The other precisions' packages that exist.
    pub others: BTreeMap<Precision, Variant>,
    /// Where each missing variant was looked for.
    pub looked_for: BTreeMap<Precision, PathBuf>,
    /// Where libtorch unpacks the packages (it honours TMPDIR): one folder
    /// per job, removed with the family, so a job leaves no unpacked
    /// compiled code behind.
    _unpacked: tempfile::TempDir,
}

impl Family {
    /// Reads the family of `head_path`, whose bytes the job already read.
    /// Err: the head is not an AOTInductor package (an exported program,
    /// not a zip), with what to do.
    pub fn read(
        head_path: &Path,
        head_bytes: Vec<u8>,
        settings: &ModelSettings,
        settings_dir: &SettingsDir,
        untrusted: bool,
        target: &Target,
    ) -> Result<Family, FamilyError> {
        let head = Variant::read(head_path, head_bytes, Precision::Fp32, target)?;
        let unpacked = tempfile::Builder::new()
            .prefix("precisiond-aoti-")
            .tempdir()
            .map_err(|error| FamilyError::Unpack {
                dir: std::env::temp_dir(),
                error,
            })?;
        // Before libtorch reads TMPDIR, and only here: this process runs
        // one job, and nothing else in it makes temporary files meanwhile.
        std::env::set_var("TMPDIR", unpacked.path());
        let mut others = BTreeMap::new();
        let mut looked_for = BTreeMap::new();
        for precision in aoti::VARIANTS {
            let named = settings
                .variants
                .as_ref()
                .and_then(|v| v.get(&precision).cloned());
            let path = match &named {
                Some(p) => settings_dir.resolve(&format!("variants.{precision}"), p)?,
                None => aoti::variant_path(head_path, precision),
            };
            match fsutil::read(&path, untrusted) {
                Ok(bytes) => {
                    let mut v = Variant::read(&path, bytes, precision, target)?;
                    if let Some(p) = named {
                        v.file = p.display().to_string();
                    }
                    others.insert(precision, v);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && named.is_none() => {
                    looked_for.insert(precision, path);
                }
                Err(error) => {
                    return Err(FamilyError::Read {
                        precision,
                        path,
                        error,
                    })
                }
            }
        }
        Ok(Family {
            head,
            others,
            looked_for,
            _unpacked: unpacked,
        })
    }

    pub fn variant(&self, precision: Precision) -> Option<&Variant> {
        if precision == Precision::Fp32 {
            Some(&self.head)
        } else {
            self.others.get(&precision)
        }
    }

    /// The report's list of the other packages.
    pub fn facts(&self) -> Vec<VariantFacts> {
        self.others
            .values()
            .map(|v| VariantFacts {
                precision: v.precision,
                file: v.file.clone(),
                sha256: v.sha256.clone(),
                bytes: v.bytes.len() as u64,
            })
            .collect()
    }
}

impl Variant {
    fn read(
        path: &Path,
        bytes: Vec<u8>,
        precision: Precision,
        target: &Target,
    ) -> Result<Variant, FamilyError> {
        let file = fsutil::file_name(path);
        let metadata = match aoti::inspect(&bytes) {
            Ok(Pt2::Package(m)) => m,
            Ok(Pt2::ExportedProgram) => return Err(FamilyError::ExportedProgram { file }),
            Err(error) => return Err(FamilyError::NotAPackage { file, error }),
        };
        // A package that declares another precision than its place in the
        // family would be compared as something it is not.
        if let Some(declared) = metadata.precision() {
            if declared != precision {
                return Err(FamilyError::Mislabelled {
                    file,
                    declared,
                    precision,
                });
            }
        }
        let runnable = aoti::can_run(&metadata, target);
        Ok(Variant {
            precision,
            file,
            sha256: hex_sha256(&bytes),
            bytes,
            metadata,
            runnable,
        })
    }
}

/// Loads `variant` through a private copy of the bytes that were read and
/// hashed: an unlinked file in the state folder, which no one else can
/// name, let alone replace, between the check and the load (libtorch's
/// loader takes a path, not bytes).
pub fn load(variant: &Variant, state_dir: &Path) -> Result<AotiPackage, PackageLoadError> {
    variant.runnable.clone()?;
    load_libtorch_so().map_err(PackageLoadError::LibtorchSo)?;
    let copy_error = |error: std::io::Error| PackageLoadError::Copy {
        file: variant.file.clone(),
        dir: state_dir.to_path_buf(),
        error,
    };
    std::fs::create_dir_all(state_dir).map_err(copy_error)?;
    let mut copy = tempfile::tempfile_in(state_dir).map_err(copy_error)?;
    copy.write_all(&variant.bytes).map_err(copy_error)?;
    copy.flush().map_err(copy_error)?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", copy.as_raw_fd()));
    // libtorch unpacks the package while loading: the copy can go after.
    AotiPackage::load(&path).map_err(|e| PackageLoadError::Libtorch {
        file: variant.file.clone(),
        libtorch: crate::model::clean_torch_error(e),
    })
}

/// Why a family cannot be read; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum FamilyError {
    /// A `.pt2` file whose content cannot be read as a package.
    #[error("{file}: {error}")]
    NotAPackage {
        file: String,
        error: aoti::InspectError,
    },
    /// A `torch.export.save` archive: no compiled code to run.
    #[error("{}", aoti::exported_program_refusal(file))]
    ExportedProgram { file: String },
    #[error(
        "{file} declares precision {declared} in its metadata but stands for {precision} in the \
         family: rename it NAME.{declared}.pt2 (or list it under `variants` in the settings file)"
    )]
    Mislabelled {
        file: String,
        declared: Precision,
        precision: Precision,
    },
    #[error("cannot make a folder to unpack the packages in {}: {error}", dir.display())]
    Unpack { dir: PathBuf, error: std::io::Error },
    /// A `variants` path the daemon may not follow.
    #[error(transparent)]
    Outside(#[from] OutsideDropFolder),
    #[error("cannot read the {precision} package {}: {error}", path.display())]
    Read {
        precision: Precision,
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Why a package could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PackageLoadError {
    /// This machine cannot run its compiled code.
    #[error(transparent)]
    CannotRun(#[from] aoti::CannotRun),
    /// The dynamic loader's message.
    #[error("cannot load libtorch.so, which AOTInductor packages need: {0}")]
    LibtorchSo(Arc<libloading::Error>),
    #[error("cannot make a private copy of {file} in {}: {error}", dir.display())]
    Copy {
        file: String,
        dir: PathBuf,
        error: std::io::Error,
    },
    #[error("libtorch could not load {file}: {libtorch}")]
    Libtorch { file: String, libtorch: String },
}

/// The compiled code in a package names `libtorch.so`, has no rpath of its
/// own, and is dlopened by libtorch: it finds libtorch.so only when this
/// process has it loaded already. The worker does not link it, because
/// the full wheel's libtorch.so needs libtorch_cuda (which `crate::cuda`
/// loads only where there is a GPU); so it is loaded here, through the
/// worker's rpath, when the first package is. (With the full wheel that
/// maps libtorch_cuda too; the lean CPU libtorch has a stub libtorch.so.)
fn load_libtorch_so() -> Result<(), Arc<libloading::Error>> {
    // The first answer for good: loading is not retried.
    static LOADED: std::sync::OnceLock<Result<(), Arc<libloading::Error>>> =
        std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| crate::libs::load_for_good("libtorch.so").map_err(Arc::new))
        .clone()
}
