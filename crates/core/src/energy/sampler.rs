//! Turns a power reading (watts, now) into energy: a thread reads it at a
//! fixed period and integrates by the trapezoid rule.
//!
//! Used for sensors that only give instantaneous power: the Jetson INA3221
//! rails and NVML's power usage on GPUs without an energy counter.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{Energy, EnergyError};

/// How often power is read. 20 ms (50 Hz) is finer than the INA3221's own
/// update interval (its conversion time × averaging, about 8-140 ms as the
/// Jetson device trees set it, see hwmon's `update_interval`), so the
/// integral sees every new value; reading sysfs costs a few µs.
pub const PERIOD: Duration = Duration::from_millis(20);

/// A sampling thread; [`Sampler::finish`] stops it.
#[derive(Debug)]
pub struct Sampler {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<Result<Integral, EnergyError>>,
}

/// The running integral.
#[derive(Debug, Clone, Copy)]
struct Integral {
    joules: f64,
    samples: u64,
    /// From the first sample to the last.
    seconds: f64,
}

/// Reads power once now (so that a sensor that cannot be read fails here,
/// not at the end), then starts a thread that reads it every `period`
/// until [`Sampler::finish`], which also takes a last reading.
pub fn spawn<F>(period: Duration, mut read_watts: F) -> Result<Sampler, EnergyError>
where
    F: FnMut() -> Result<f64, EnergyError> + Send + 'static,
{
    let first = read_watts()?;
    let t0 = Instant::now();
    let (stop, stopped) = mpsc::channel::<()>();
    let handle = thread::Builder::new()
        .name("energy-sampler".to_string())
        .spawn(move || {
            let mut integral = Integral {
                joules: 0.0,
                samples: 1,
                seconds: 0.0,
            };
            let (mut last_t, mut last_p) = (t0, first);
            let mut next = t0 + period;
            loop {
                // Deadlines from t0, not "period after the last read", so the
                // rate does not drift by the cost of each read.
                let wait = next.saturating_duration_since(Instant::now());
                let last = match stopped.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => false,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
                };
                let p = read_watts()?;
                let t = Instant::now();
                let dt = t.duration_since(last_t).as_secs_f64();
                integral.joules += (last_p + p) / 2.0 * dt;
                integral.samples += 1;
                integral.seconds = t.duration_since(t0).as_secs_f64();
                (last_t, last_p) = (t, p);
                if last {
                    return Ok(integral);
                }
                next += period;
                if next < t {
                    // Fell behind (a slow read): skip the missed ticks.
                    next = t + period;
                }
            }
        })
        .map_err(|e| EnergyError::SamplerThread(e.into()))?;
    Ok(Sampler { stop, handle })
}

impl Sampler {
    /// Stops the thread (after one last reading) and returns the integral.
    pub fn finish(self) -> Result<Energy, EnergyError> {
        let _ = self.stop.send(());
        let integral = self
            .handle
            .join()
            .map_err(|_| EnergyError::SamplerPanicked)??;
        let sampling_hz =
            (integral.seconds > 0.0).then(|| (integral.samples - 1) as f64 / integral.seconds);
        Ok(Energy {
            joules: integral.joules,
            seconds: integral.seconds,
            samples: integral.samples,
            sampling_hz,
            resolution_j: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_power_integrates_to_power_times_time() {
        let s = spawn(Duration::from_millis(5), || Ok(10.0)).unwrap();
        thread::sleep(Duration::from_millis(100));
        let e = s.finish().unwrap();
        assert!((e.joules - 10.0 * e.seconds).abs() < 1e-9, "{e:?}");
        assert!(e.seconds >= 0.1, "{e:?}");
        assert!(e.samples >= 5, "{e:?}");
        assert!(e.sampling_hz.unwrap() > 20.0, "{e:?}");
    }

    #[test]
    fn a_ramp_integrates_by_the_trapezoid_rule() {
        // Power rising linearly with time: the trapezoid rule is exact.
        let t0 = Instant::now();
        let s = spawn(Duration::from_millis(5), move || {
            Ok(100.0 * t0.elapsed().as_secs_f64())
        })
        .unwrap();
        thread::sleep(Duration::from_millis(100));
        let e = s.finish().unwrap();
        // ∫ 100 t dt from ~0 to T = 50 T² (the first read is at t ≈ 0).
        let expected = 50.0 * e.seconds * e.seconds;
        assert!(
            (e.joules - expected).abs() < 0.02 * expected + 1e-3,
            "{e:?}"
        );
    }

    #[test]
    fn a_failing_first_read_fails_start() {
        let err = spawn(PERIOD, || Err(EnergyError::NoSensor)).unwrap_err();
        assert!(matches!(err, EnergyError::NoSensor), "{err:?}");
    }

    #[test]
    fn a_failing_later_read_fails_finish() {
        let mut n = 0;
        let s = spawn(Duration::from_millis(1), move || {
            n += 1;
            if n > 2 {
                Err(EnergyError::NoRail { notes: Vec::new() })
            } else {
                Ok(1.0)
            }
        })
        .unwrap();
        thread::sleep(Duration::from_millis(20));
        assert!(matches!(
            s.finish().unwrap_err(),
            EnergyError::NoRail { .. }
        ));
    }
}
