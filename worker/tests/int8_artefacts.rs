//! INT8 checks that need libtorch in the test process itself (to read the
//! quantized artefact back, to write calibration images). They live in the
//! worker crate, the only one that links libtorch; the other INT8 tests are
//! in the top-level tests/int8.rs. Each runs the real worker binary.

use std::path::Path;
use std::process::Output;

#[path = "../../tests/common/calibrated.rs"]
mod calibrated;

use calibrated::{cnn_with_calibration, fixtures as fixtures_dir, int8_result, MIN_COSINE};

/// The worker measuring FP32 and INT8 on the CPU with a short budget.
fn run_quick(model: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_precisiond-worker"))
        .arg("run")
        .arg(model)
        .args(["--no-probe", "--threads", "2", "--max-seconds", "0.3"])
        .args(["--devices", "cpu", "--precisions", "fp32,int8"])
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_saved_artefact_gives_the_outputs_that_were_measured() {
    let (dir, model) = cnn_with_calibration(&fixtures_dir().join("calib/cnn_residual_npy"));
    let out = run_quick(&model);
    assert!(out.status.success(), "{}", text(&out));
    let int8 = int8_result(&model);
    let reported = int8["accuracy"]["sqnr_db"].as_float().unwrap();

    // Accuracy was measured on the held-out sample (the last file); the
    // artefact, loaded on its own, must reproduce it.
    let quantized =
        tch::CModule::load(dir.path().join(int8["quantized_model"].as_str().unwrap())).unwrap();
    let fp32 = tch::CModule::load(&model).unwrap();
    let x = tch::Tensor::read_npy(dir.path().join("samples/sample_03.npy")).unwrap();
    let _guard = tch::no_grad_guard();
    let reference = fp32.forward_ts(&[&x]).unwrap().to_kind(tch::Kind::Double);
    let output = quantized
        .forward_ts(&[&x])
        .unwrap()
        .to_kind(tch::Kind::Double);
    let signal = reference
        .pow_tensor_scalar(2)
        .sum(tch::Kind::Double)
        .double_value(&[]);
    let noise = (&reference - &output)
        .pow_tensor_scalar(2)
        .sum(tch::Kind::Double)
        .double_value(&[]);
    let sqnr = 10.0 * (signal / noise).log10();
    assert!(
        (sqnr - reported).abs() < 1e-6,
        "artefact {sqnr} dB vs report {reported} dB"
    );
}

#[test]
fn image_files_calibrate_after_resizing_and_normalising() {
    let images = tempfile::tempdir().unwrap();
    tch::manual_seed(3);
    for i in 0..4 {
        // Smooth, image-like content at another size than the model's input:
        // precisiond resizes to 224x224 and normalises with ImageNet's stats.
        let small = tch::Tensor::rand([3, 8, 12], (tch::Kind::Float, tch::Device::Cpu));
        let image = small
            .unsqueeze(0)
            .upsample_bilinear2d([96, 128], false, None, None)
            .squeeze_dim(0)
            * 255.0;
        let name = if i % 2 == 0 {
            format!("img_{i}.png")
        } else {
            format!("img_{i}.jpg")
        };
        tch::vision::image::save(&image.to_kind(tch::Kind::Uint8), images.path().join(name))
            .unwrap();
    }
    let (_dir, model) = cnn_with_calibration(images.path());
    let out = run_quick(&model);
    assert!(out.status.success(), "{}", text(&out));
    let int8 = int8_result(&model);
    assert_eq!(int8["status"].as_str(), Some("ok"), "{int8:?}");
    assert_eq!(int8["calibration"]["samples"].as_integer(), Some(3));
    assert_eq!(int8["calibration"]["held_out"].as_integer(), Some(1));
    let cosine = int8["accuracy"]["cosine"].as_float().unwrap();
    assert!(cosine >= MIN_COSINE, "cosine {cosine}");
}
