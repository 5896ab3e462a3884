"""command=lr-find: Lightning's range test for fine-tuning, its plot, JSON and the head.lr override to fit with."""

from __future__ import annotations

import json
import math
import re

import pytest

from tests.test_cli_errors import check_one_clean_line


@pytest.mark.slow
def test_lr_find_on_digits_writes_plot_json_and_the_override(run_cli, tmp_path):
    run_dir = tmp_path / "run"
    args = ("command=lr-find", "~recipe", "regime=full", "trainer.accelerator=cpu", "lr_find.num_training=20")
    proc = run_cli(*args, "lr_find.min_lr=1e-5", "lr_find.max_lr=0.5", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run_dir / "lr_find.png").stat().st_size > 1024
    result = json.loads((run_dir / "lr_find.json").read_text())
    lr = result["suggested_lr"]
    assert math.isfinite(lr) and 1e-5 <= lr <= 0.5
    assert len(result["lrs"]) == len(result["losses"]) == result["steps"] <= 20
    assert result["lrs"][0] == pytest.approx(1e-5) and result["lrs"] == sorted(result["lrs"])
    assert result["train_images"] == 50  # digits 5-9, 10 shots each
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("suggested head.lr="))
    shown = re.match(r"suggested head\.lr=(\S+) ", line).group(1)
    assert float(shown) == pytest.approx(lr, rel=0.05)
    # the fit command keeps the user's overrides but the command, lr-find's keys and the run dir
    assert line.endswith(f"run: python -m transfer '~recipe' regime=full trainer.accelerator=cpu head.lr={shown}")


@pytest.mark.slow
def test_find_lr_keeps_the_body_at_its_fraction_of_the_head(tmp_path):
    from dataclasses import replace

    from tests.requests import fit_request
    from transfer.studies.config import LrFindConfig
    from transfer.studies.lr_find import find_lr_for_request

    req = fit_request(tmp_path, "regime=full", "regime.body_lr_factor=0.1", "source=null", "data.shots=4")
    sweep = LrFindConfig(min_lr=1e-4, max_lr=1.0, num_training=20)
    req = replace(req, cfg=replace(req.cfg, lr_find=sweep))
    result = find_lr_for_request(req, req.regimes[0])
    assert 1e-4 <= result["suggested_lr"] <= 1.0
    assert len(result["raw_losses"]) == len(result["lrs"]) == 20 and all(map(math.isfinite, result["raw_losses"]))
    assert result["lrs"][0] == pytest.approx(1e-4)
    assert result["lrs"][-1] == pytest.approx(1.0)  # Lightning's schedule: min, then min * 10^(4 (k + 1) / 20)
    ratios = [b / a for a, b in zip(result["lrs"][1:], result["lrs"][2:], strict=False)]
    assert ratios == pytest.approx([10 ** (4 / 20)] * 18)  # exponential: one fifth of a decade per step
    rates = result["last_step_group_lrs"]
    head = rates["head"]
    assert head == pytest.approx(result["lrs"][-1])  # the recorded rate is the head's
    body = {k: v for k, v in rates.items() if not k.startswith("head")}
    assert body and all(v == pytest.approx(0.1 * head) for v in body.values())  # not all groups at one rate


def test_frozen_regime_is_one_line_exit_2(run_cli):
    line = check_one_clean_line(run_cli("command=lr-find", "regime=frozen"), "regime=frozen", "L-BFGS")
    assert "regime=partial or regime=full" in line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("lr_find.min_lr=0.1", "lr_find.max_lr=0.01"), "min_lr must be below max_lr"),
        (("lr_find.num_training=5",), "lr_find.num_training=5: must be >= 20"),
        (("lr_find.min_lr=0",), "lr_find.min_lr=0"),
    ],
)
def test_bad_sweep_values_are_one_line(run_cli, args, needle):
    check_one_clean_line(run_cli("command=lr-find", "regime=full", *args), needle)


def test_fit_command_drops_lr_find_keys_and_quotes():
    from transfer.app.commands.lr_find import fit_command

    overrides = ["command=lr-find", "head.lr=0.1", "lr_find.max_lr=2", "hydra.run.dir=x", "data.root=my cats"]
    assert fit_command(overrides, 0.003162) == "python -m transfer 'data.root=my cats' head.lr=0.0032"


def test_smoothing_is_centred_and_skips_non_finite_steps():
    from transfer.studies.lr_find import smooth_losses

    assert smooth_losses([1.0, 2.0, 3.0, 4.0, 5.0], window=3) == [1.5, 2.0, 3.0, 4.0, 4.5]
    out = smooth_losses([1.0, float("nan"), 3.0], window=3)
    assert out[0] == 1.0 and math.isnan(out[1]) and out[2] == 3.0


def test_steepest_descent_is_per_decade_and_skips_the_first_steps():
    from transfer.studies.lr_find import steepest_descent

    lrs = [10 ** (-6 + k / 10) for k in range(61)]  # 1e-6 .. 1, ten steps a decade
    losses = [1 - math.tanh(2 * (math.log10(lr) + 2)) for lr in lrs]  # falls fastest at 1e-2 (step 40)
    assert steepest_descent(lrs, losses) == 40
    losses[3] = -5.0  # a plunge among the first 10 steps is not a suggestion
    assert steepest_descent(lrs, losses) == 40
    assert steepest_descent(lrs[:12], losses[:12]) is None  # one point left after skipping 10 and the last
