//! Energy across a result's timed calls: the sensor that covers the device
//! (`precisiond_core::energy`), read at the start and the end of the timed
//! window (`bench::TimedWindow`), the window extended with further calls
//! when it was too short for the sensor, and the idle power just before.

use crate::model::TorchError;
use precisiond_core::bench::TimedWindow;
use precisiond_core::devices::Device;
use precisiond_core::energy::{self, Energy, EnergyError, Running, Sensor};
use precisiond_core::report::EnergyFacts;
use std::time::{Duration, Instant};

/// Shortest energy window: a counter updated about every millisecond
/// (RAPL) or a power sensor sampled every 20 ms (INA3221) needs this long
/// for its reading, not its resolution or sampling, to make the figure.
const MIN_WINDOW: Duration = Duration::from_millis(500);
/// The idle power's window, before the warm-up: bounded and short.
const IDLE_WINDOW: Duration = Duration::from_millis(200);

/// The sensor whose reading covers work on `device`, or why there is none.
pub fn sensor_for(device: Device) -> Result<Sensor, EnergyError> {
    match device {
        Device::Cpu => energy::for_cpu(&energy::sysfs_root()),
        Device::Cuda(index) => energy::for_cuda(&energy::sysfs_root(), index),
    }
}

/// Mean power over a short idle window, watts.
pub fn idle_power(sensor: &Sensor) -> Result<f64, EnergyError> {
    let running = sensor.start()?;
    std::thread::sleep(IDLE_WINDOW);
    let e = running.finish()?;
    Ok(e.joules / e.seconds.max(1e-9))
}

/// The energy window of one timing: opened when the timed calls start.
pub struct Window<'a> {
    sensor: &'a Sensor,
    running: Option<Result<Running, EnergyError>>,
    opened: Option<Instant>,
}

impl<'a> Window<'a> {
    pub fn new(sensor: &'a Sensor) -> Window<'a> {
        Window {
            sensor,
            running: None,
            opened: None,
        }
    }

    /// Closes the window after `timed_calls`: first, while it has lasted
    /// less than [`MIN_WINDOW`] and `deadline` (the time budget's end) is
    /// not reached, more calls of `call`, counted in. Returns the reading
    /// and the calls it covers.
    pub fn close(
        self,
        timed_calls: u64,
        call: impl Fn() -> Result<(), TorchError>,
        deadline: Instant,
    ) -> Result<(Energy, u64), NotRead> {
        let running = self.running.ok_or(NotRead::NeverStarted)??;
        let opened = self.opened.expect("set with running");
        let mut calls = timed_calls;
        while opened.elapsed() < MIN_WINDOW && Instant::now() < deadline {
            call()?;
            calls += 1;
        }
        Ok((running.finish()?, calls))
    }
}

/// Why a window has no reading.
#[derive(Debug, thiserror::Error)]
pub enum NotRead {
    #[error("the timed calls never started")]
    NeverStarted,
    #[error(transparent)]
    Sensor(#[from] EnergyError),
    /// A call that lengthened the window failed.
    #[error(transparent)]
    Call(#[from] TorchError),
}

impl TimedWindow for Window<'_> {
    fn started(&mut self) {
        self.opened = Some(Instant::now());
        self.running = Some(self.sensor.start());
    }

    fn ended(&mut self) {}
}

/// The report's energy facts of a reading over `calls` calls of `batch`
/// inferences each, with the idle power before.
pub fn facts(
    sensor: &Sensor,
    reading: &Energy,
    calls: u64,
    batch: i64,
    idle_w: Result<f64, EnergyError>,
) -> EnergyFacts {
    let info = sensor.info();
    let inferences = (calls.max(1) as f64) * (batch.max(1) as f64);
    EnergyFacts {
        sensor: info.name,
        rails: info.rails,
        energy_mj_per_inference: Some(reading.joules * 1e3 / inferences),
        mean_power_w: Some(reading.joules / reading.seconds.max(1e-9)),
        idle_power_w: idle_w.ok(),
        energy_vs_fp32: None,
        window_seconds: Some(reading.seconds),
        calls: Some(calls),
        samples: Some(reading.samples),
        sampling_hz: reading.sampling_hz,
        not_read: None,
    }
}

/// The facts of a result without a reading: the sensor's name when there
/// is one, and why not.
pub fn not_read(sensor: Option<&Sensor>, why: impl std::fmt::Display) -> EnergyFacts {
    EnergyFacts {
        sensor: sensor.map(|s| s.info().name).unwrap_or_default(),
        not_read: Some(why.to_string()),
        ..EnergyFacts::default()
    }
}
