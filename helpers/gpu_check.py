"""Does the series work on this GPU? A few dozen steps of everything that touches the device, one line each.

    make gpu-check                      # or: python -m helpers.gpu_check   (or !python -m helpers.gpu_check in Colab)
    python -m helpers.gpu_check --device cpu      # the same checks on the CPU (what the tests run)

On a machine without CUDA it says so and exits 0: there is nothing to check. Otherwise it prints the device's
name, then PASS or FAIL for: every method of the registry (learners.METHODS) on the MNIST FCN with its
measurements; DNI and cDNI on the CNN under mixed precision at the dtype the device supports
(config.amp_dtype); the recurrent trainer (model and streams on the device); the concurrent full unlock and
a 2-stage pipeline started after the GPU has been used (the processes must be spawned, not forked); the
gradient explorer's figure from gradients recorded on the device; a checkpoint saved and resumed on the
device; and the eager step time of backprop, DNI and cDNI. It exits 1 if any check failed: please send its
whole output with your report. Used from the README and notebook 00.
"""
import argparse
import os
import sys
import tempfile
import time
import traceback

import torch

from . import config, data, learners, models, plots, rnn, timing, training

STEPS = 30


def fake_mnist(device, n=512):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
    return data.Dataset("random MNIST-shaped data", x.to(device), y.to(device), x[:256].to(device), y[:256].to(device))


def check_methods(device, dataset):
    schedule = config.RunSize("check", iterations=STEPS, lr=1e-3, batch_size=64, eval_every=STEPS // 2)
    for method in learners.METHODS:
        config.seed_everything(0)
        learner = learners.make(method, models.fcn(4 if method == "multirate" else 3, hidden=64).to(device), 1e-3)
        history = training.train(learner, dataset, schedule, progress=False)
        assert all(p.device.type == device.type for p in learners.parameters(learner)), "a parameter left the device"
        yield method, f"test accuracy {history.final_test_accuracy:.2f}, {len(history.extra)} measurements"


def check_mixed_precision(device):
    dtype = config.amp_dtype(device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (64,), generator=g).to(device)
    for method in ("dni", "cdni"):
        config.seed_everything(0)
        learner = learners.make(method, models.cnn(3, channels=16, in_channels=3, image_size=32).to(device), 1e-3,
                                hidden=16)
        losses = []
        for _ in range(5):
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                loss, _ = learner.step(x, y)
            losses.append(float(loss.detach()))
        assert all(v == v for v in losses), f"NaN loss under {dtype}"
        yield f"CNN {method} under mixed precision", config.amp_reason(device)


def check_recurrent(device):
    trainer, history = rnn.train_copy("dni", 3, 40, hidden=16, batch=8, log_every=20, progress=False, device=device)
    assert trainer.model.readout.weight.device.type == device.type
    yield "recurrent DNI on the copy task", f"model on {device.type}, error {history.train_loss[-1]:.2f} bits"


def check_processes(device, dataset):
    from . import pipeline, unlock
    torch.ones(1, device=device).sum().item()           # the GPU is in use before any worker starts
    units = unlock.make_units(models.fcn(3, hidden=32), 1e-3)
    x, y = dataset.x_train[:64].cpu(), dataset.y_train[:64].cpu()
    with unlock.ConcurrentFullUnlock(units, timeout=120) as runner:
        for _ in range(3):
            runner.step(x, y)
    yield f"concurrent full unlock after {device.type} was used", "3 steps in 3 spawned processes"
    cpu_data = data.Dataset("cpu copy", dataset.x_train.cpu(), dataset.y_train.cpu(), dataset.x_test.cpu(),
                            dataset.y_test.cpu())
    config_ = pipeline.PipelineConfig(stages=2, mode="decoupled", hidden=32, batch_size=64, steps=10, timeout=60)
    reports = pipeline.launch(config_, cpu_data)
    yield f"2-stage decoupled pipeline after {device.type} was used", f"{reports[-1]['steps']} steps"


def check_explorer(device, dataset):
    import matplotlib
    matplotlib.use("Agg")
    config.seed_everything(0)
    learner = learners.make("cdni", models.fcn(3, hidden=64).to(device), 1e-3)
    schedule = config.RunSize("check", iterations=20, lr=1e-3, batch_size=64, eval_every=10)
    history = training.train(learner, dataset, schedule, progress=False)
    synthetic, true = learner.snapshots[-1][-1]
    figure = plots.plot_gradient_comparison(synthetic, true, 1, history.iteration[-1], history)
    yield "gradient explorer figure", f"{len(figure.axes)} panels from gradients recorded on {device.type}"


def check_checkpoint(device, dataset):
    schedule = config.RunSize("check", iterations=20, lr=1e-3, batch_size=64, eval_every=5, checkpoint_every=10)

    def learner():
        config.seed_everything(0)
        return learners.make("cdni", models.fcn(3, hidden=32).to(device), 1e-3)
    whole = training.train(learner(), dataset, schedule, progress=False, checkpoint=False)
    with tempfile.TemporaryDirectory() as folder:
        interrupted, calls = learner(), []
        real_step = interrupted.step

        def step(x, y):
            calls.append(1)
            if len(calls) == 15:
                raise KeyboardInterrupt("a simulated disconnect")
            return real_step(x, y)
        interrupted.step = step
        try:
            training.train(interrupted, dataset, schedule, progress=False, checkpoint=folder)
        except KeyboardInterrupt:
            pass
        resumed = training.train(learner(), dataset, schedule, progress=False, checkpoint=folder)
    assert resumed.train_loss == whole.train_loss, "the resumed run differs from the uninterrupted one"
    yield "checkpoint and resume", "the resumed history equals the uninterrupted one"


def check_step_time(device, dataset):
    x, y = dataset.x_train[:256], dataset.y_train[:256]
    cells = []
    for method in ("backprop", "dni", "cdni"):
        config.seed_everything(0)
        learner = learners.make(method, models.fcn(3).to(device), 1e-4)
        cells.append(f"{method} {timing.median_ms(lambda: learner.step(x, y), 20, warmup=3, device=device):.2f} ms")
    yield "eager step time, 3-layer FCN, batch 256", ", ".join(cells)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="default: cuda if available (else nothing to check)")
    args = parser.parse_args(argv)
    if args.device is None and not torch.cuda.is_available():
        print("No CUDA GPU is visible to torch here: nothing to check. (The series runs on this CPU as it is.)")
        return 0
    device = torch.device(args.device or "cuda")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {device}: {name}; torch {torch.__version__}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs")
    dataset = fake_mnist(device)
    checks = [lambda: check_methods(device, dataset), lambda: check_mixed_precision(device),
              lambda: check_recurrent(device), lambda: check_processes(device, dataset),
              lambda: check_explorer(device, dataset), lambda: check_checkpoint(device, dataset),
              lambda: check_step_time(device, dataset)]
    failed = 0
    for check in checks:
        start = time.perf_counter()
        try:
            for what, detail in check():
                print(f"PASS  {what}: {detail}", flush=True)
        except Exception as error:   # one failed check must not hide the others
            failed += 1
            where = traceback.extract_tb(error.__traceback__)[-1]
            print(f"FAIL  {check.__code__.co_names[0] if check.__code__.co_names else 'check'}: "
                  f"{type(error).__name__}: {str(error)[:300]} ({os.path.basename(where.filename)}:{where.lineno}, "
                  f"{time.perf_counter() - start:.0f} s)", flush=True)
    print(f"{failed} check(s) failed" if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
