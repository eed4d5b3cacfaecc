//! Loading libraries at run time, for good: libtorch's own (found through
//! the worker's rpath: DT_RUNPATH is searched by dlopen calls made from the
//! executable) and operator libraries, the shared objects that register a
//! model's custom TorchScript operators (`ops.torchvision.nms(...)`). All
//! are loaded with their symbols global, so what they register with
//! libtorch and what later libraries need from them are there, and are
//! never unloaded.
//!
//! Operator libraries come from the `op_libraries` knob (config file,
//! `--op-library`), then a settings file's `op_libraries`; torchvision's is
//! found without being named ([`torchvision_places`]) and loaded only for a
//! model whose code calls `torchvision` operators. Before a TorchScript
//! model is loaded, the operator namespaces its code calls are read from its
//! archive and each is checked against libtorch's registry
//! ([`ensure_operators`]): a namespace nothing registered is an error that
//! names it, instead of libtorch's "Unknown builtin op".

use crate::shim::{self, ShimError};
use precisiond_core::settings::{ModelSettings, OutsideDropFolder, SettingsDir};
use std::fmt;
use std::path::{Path, PathBuf};

/// dlopens `name` (RTLD_NOW | RTLD_GLOBAL) and keeps it loaded. Err:
/// the dynamic loader's message (which names what is missing).
pub fn load_for_good(name: &str) -> Result<(), libloading::Error> {
    open_for_good(name.as_ref())
}

fn open_for_good(name: &std::ffi::OsStr) -> Result<(), libloading::Error> {
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
    // SAFETY: the libraries loaded here are libtorch's own or operator
    // libraries the user named (or torchvision's), whose initialisers
    // register with the libtorch already loaded; they are never unloaded.
    match unsafe { libloading::os::unix::Library::open(Some(name), flags) } {
        Ok(library) => {
            std::mem::forget(library);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The torchvision release whose operator library the worker looks for:
/// scripts/install-torchvision.sh's `TORCHVISION_VERSION` (a test keeps the
/// two equal), the one paired with the libtorch the worker is built for.
pub const TORCHVISION_VERSION: &str = "0.28.0";

/// The operator namespace torchvision's library registers.
pub const TORCHVISION_NAMESPACE: &str = "torchvision";

/// Where torchvision's operator library is looked for, in order: installed
/// beside the worker (`make install`: PREFIX/lib/precisiond/torchvision/,
/// as libtorch sits in PREFIX/lib/precisiond/torch/lib/), then where
/// scripts/install-torchvision.sh prepares it in the cache
/// (`$PRECISIOND_CACHE`, else `$XDG_CACHE_HOME/precisiond`, else
/// `~/.cache/precisiond`: the scripts' rule).
pub fn torchvision_places() -> Vec<PathBuf> {
    let mut places = Vec::new();
    if let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|p| p.to_path_buf()))
    {
        places.push(bin.join("../lib/precisiond/torchvision/libtorchvision.so"));
    }
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let cache = env("PRECISIOND_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|c| c.join("precisiond")))
        .or_else(|| env("HOME").map(|h| h.join(".cache/precisiond")));
    if let Some(cache) = cache {
        places.push(
            cache
                .join(format!("torchvision-{TORCHVISION_VERSION}"))
                .join("ops/libtorchvision.so"),
        );
    }
    places
}

/// Who named an operator library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The `op_libraries` knob: the config file or `--op-library`.
    Knobs,
    /// A settings file's `op_libraries`.
    Settings(PathBuf),
    /// Found where torchvision's library is looked for by default.
    Torchvision,
    /// Loaded by the worker for this model, again in its quantizing process.
    Inherited,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Knobs => {
                f.write_str("named by `op_libraries` in the config file or --op-library")
            }
            Origin::Settings(path) => {
                write!(f, "named by `op_libraries` in {}", path.display())
            }
            Origin::Torchvision => f.write_str(
                "torchvision's operator library, prepared by scripts/install-torchvision.sh",
            ),
            Origin::Inherited => f.write_str("loaded by the worker for this model"),
        }
    }
}

/// Why the operators a model needs are not there.
#[derive(Debug, thiserror::Error)]
pub enum OpLibraryError {
    /// dlopen refused the library: its message names what is missing
    /// (the file, a library it needs, a symbol).
    #[error("cannot load the operator library {} ({origin}): {dlerror}", path.display())]
    Load {
        path: PathBuf,
        origin: Origin,
        dlerror: String,
    },
    /// The daemon loads no library that a drop folder's settings name.
    #[error(
        "`op_libraries` in {}: precisiond's daemon loads no library that a settings file in the \
         drop folder names (a library runs code as the service); the administrator lists it in \
         the config file's `op_libraries`",
        settings.display()
    )]
    Confined { settings: PathBuf },
    #[error(transparent)]
    OutsideDropFolder(#[from] OutsideDropFolder),
    /// libtorch could not say which operators are registered.
    #[error("cannot check the registered operators: {0}")]
    Registry(ShimError),
    /// The model calls operators of namespaces nothing registered.
    #[error("{}", unknown_message(.namespaces, .torchvision_places))]
    UnknownNamespaces {
        namespaces: Vec<String>,
        /// Where torchvision's library was looked for, when `torchvision`
        /// is among the namespaces (none was there).
        torchvision_places: Vec<PathBuf>,
    },
}

fn unknown_message(namespaces: &[String], torchvision_places: &[PathBuf]) -> String {
    let named: Vec<String> = namespaces.iter().map(|ns| format!("`{ns}`")).collect();
    let mut text = format!(
        "the model calls operators of the namespace{} {} (`ops.{}.…` in its code), which no \
         loaded library registers: name the library that registers them in `op_libraries` (a \
         key of the config file and of the model's settings file; `precisiond run \
         --op-library PATH`)",
        if namespaces.len() == 1 { "" } else { "s" },
        named.join(", "),
        namespaces.first().map(String::as_str).unwrap_or_default(),
    );
    if namespaces.iter().any(|ns| ns == TORCHVISION_NAMESPACE) {
        let places: Vec<String> = torchvision_places
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        text.push_str(&format!(
            ". torchvision's library (torchvision {TORCHVISION_VERSION}'s operators, made \
             loadable without Python by scripts/install-torchvision.sh) is loaded without being \
             named when it is at {}; it is not there",
            places.join(" or ")
        ));
    }
    text
}

/// Loads the operator libraries the job names: the knobs' (config file,
/// `--op-library`), then the settings file's (relative to it). Returns
/// the paths loaded, in order.
pub fn load_named(
    knobs: &[PathBuf],
    settings: &ModelSettings,
    settings_dir: &SettingsDir,
) -> Result<Vec<PathBuf>, OpLibraryError> {
    if settings_dir.is_confined() && !settings.op_libraries.is_empty() {
        return Err(OpLibraryError::Confined {
            settings: settings_dir.settings_path().to_path_buf(),
        });
    }
    let mut named: Vec<(PathBuf, Origin)> =
        knobs.iter().map(|p| (p.clone(), Origin::Knobs)).collect();
    for path in &settings.op_libraries {
        let origin = Origin::Settings(settings_dir.settings_path().to_path_buf());
        named.push((settings_dir.resolve("op_libraries", path)?, origin));
    }
    for (path, origin) in &named {
        load_library(path, origin.clone())?;
    }
    Ok(named.into_iter().map(|(path, _)| path).collect())
}

/// The operator libraries this process loaded, in order: the worker hands
/// them to its quantizing process, which reads the same model.
static LOADED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn load_library(path: &Path, origin: Origin) -> Result<(), OpLibraryError> {
    log::debug!("loading operator library {} ({origin})", path.display());
    open_for_good(path.as_os_str()).map_err(|e| OpLibraryError::Load {
        path: path.to_path_buf(),
        origin,
        dlerror: e.to_string(),
    })?;
    LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(path.to_path_buf());
    Ok(())
}

/// The operator libraries loaded so far in this process, in order.
pub fn loaded_op_libraries() -> Vec<PathBuf> {
    LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// Loads, in a process of the worker's own (the quantizing one), the
/// operator libraries the worker loaded for the model.
pub fn load_inherited(paths: &[PathBuf]) -> Result<(), OpLibraryError> {
    paths
        .iter()
        .try_for_each(|path| load_library(path, Origin::Inherited))
}

/// Makes sure every operator namespace the TorchScript model in `bytes`
/// calls is registered, loading torchvision's library when the model
/// calls `torchvision` operators and none are registered yet. Returns the
/// library loaded here, if any. A file whose archive cannot be read is let
/// through: loading it says what is wrong with it.
pub fn ensure_operators(bytes: &[u8]) -> Result<Option<PathBuf>, OpLibraryError> {
    let namespaces = match shim::op_namespaces(bytes) {
        Ok(namespaces) => namespaces,
        Err(e) => {
            log::debug!("cannot read the model's operator namespaces: {e}");
            return Ok(None);
        }
    };
    let unknown = |namespaces: &[String]| -> Result<Vec<String>, OpLibraryError> {
        let mut missing = Vec::new();
        for ns in namespaces {
            if !shim::op_namespace_registered(ns).map_err(OpLibraryError::Registry)? {
                missing.push(ns.clone());
            }
        }
        Ok(missing)
    };
    let mut missing = unknown(&namespaces)?;
    let mut loaded = None;
    let places = torchvision_places();
    if missing.iter().any(|ns| ns == TORCHVISION_NAMESPACE) {
        if let Some(found) = places.iter().find(|p| p.is_file()) {
            load_library(found, Origin::Torchvision)?;
            loaded = Some(found.clone());
            missing = unknown(&missing)?;
        }
    }
    if missing.is_empty() {
        return Ok(loaded);
    }
    let torchvision_places = if missing.iter().any(|ns| ns == TORCHVISION_NAMESPACE) {
        places
    } else {
        Vec::new()
    };
    Err(OpLibraryError::UnknownNamespaces {
        namespaces: missing,
        torchvision_places,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_looked_for_is_the_one_the_script_installs() {
        let script = include_str!("../../scripts/install-torchvision.sh");
        let line =
            format!("TORCHVISION_VERSION=\"${{TORCHVISION_VERSION:-{TORCHVISION_VERSION}}}\"");
        assert!(
            script.lines().any(|l| l.trim() == line),
            "scripts/install-torchvision.sh has no line {line}"
        );
    }

    #[test]
    fn torchvision_is_looked_for_in_the_cache_the_scripts_use() {
        // The worker's environment is its own: PRECISIOND_CACHE wins, as in
        // the scripts.
        std::env::set_var("PRECISIOND_CACHE", "/c");
        let places = torchvision_places();
        std::env::remove_var("PRECISIOND_CACHE");
        assert_eq!(
            places.last().unwrap(),
            &PathBuf::from(format!(
                "/c/torchvision-{TORCHVISION_VERSION}/ops/libtorchvision.so"
            ))
        );
        assert!(places[0].ends_with("lib/precisiond/torchvision/libtorchvision.so"));
    }

    #[test]
    fn an_unknown_namespace_is_named_with_the_setting() {
        let e = OpLibraryError::UnknownNamespaces {
            namespaces: vec!["mylib".into()],
            torchvision_places: vec![],
        }
        .to_string();
        assert!(e.contains("`mylib`") && e.contains("op_libraries"), "{e}");
        assert!(!e.contains("torchvision"), "{e}");
        let e = OpLibraryError::UnknownNamespaces {
            namespaces: vec!["torchvision".into()],
            torchvision_places: vec![PathBuf::from("/x/libtorchvision.so")],
        }
        .to_string();
        assert!(e.contains("/x/libtorchvision.so"), "{e}");
        assert!(e.contains("scripts/install-torchvision.sh"), "{e}");
    }

    #[test]
    fn a_missing_library_is_an_error_naming_its_path_and_the_loader() {
        let path = PathBuf::from("/nonexistent/libnothing.so");
        let e = load_named(
            std::slice::from_ref(&path),
            &ModelSettings::default(),
            &SettingsDir::of(Path::new("/d/m.pt.toml"), false),
        )
        .unwrap_err();
        assert!(
            matches!(&e, OpLibraryError::Load { path: p, origin: Origin::Knobs, .. } if *p == path),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(e.contains("/nonexistent/libnothing.so"), "{e}");
        // dlerror's own words follow (what the loader could not find).
        assert!(
            e.len() > "cannot load the operator library /nonexistent/libnothing.so".len() + 40,
            "{e}"
        );
    }

    #[test]
    fn the_namespaces_a_model_calls_are_read_from_its_archive() {
        let detector = include_bytes!("../../tests/fixtures/models/torchvision_ops.pt");
        // Its code also calls TorchScript's own `ops.prim.…`.
        let namespaces = shim::op_namespaces(detector).unwrap();
        assert!(
            namespaces.iter().any(|ns| ns == "torchvision"),
            "{namespaces:?}"
        );
        assert!(
            namespaces
                .iter()
                .all(|ns| ns == "torchvision" || shim::op_namespace_registered(ns).unwrap()),
            "{namespaces:?}"
        );
        let mlp = include_bytes!("../../tests/fixtures/models/mlp.pt");
        for ns in shim::op_namespaces(mlp).unwrap() {
            assert!(shim::op_namespace_registered(&ns).unwrap(), "{ns}");
        }
        assert_eq!(ensure_operators(mlp).unwrap(), None);
        assert!(shim::op_namespace_registered("aten").unwrap());
        assert!(!shim::op_namespace_registered("no_such_namespace").unwrap());
        // Not an archive: an error (the load that follows explains it).
        assert!(shim::op_namespaces(b"not a zip archive").is_err());
    }

    #[test]
    fn the_daemon_loads_no_library_a_drop_folder_names() {
        let settings = ModelSettings {
            op_libraries: vec![PathBuf::from("libx.so")],
            ..ModelSettings::default()
        };
        let e = load_named(
            &[],
            &settings,
            &SettingsDir::of(Path::new("/d/m.pt.toml"), true),
        )
        .unwrap_err();
        assert!(matches!(e, OpLibraryError::Confined { .. }), "{e:?}");
    }
}
