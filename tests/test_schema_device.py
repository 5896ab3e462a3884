"""The device keys of the schema: precision auto, num_workers auto or a count, compile and benchmark."""

from __future__ import annotations

import pytest

from transfer.app.compose import compose
from transfer.app.schema import validate
from transfer.errors import UserError


def _plain(*overrides: str) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose(["~recipe", *overrides]), resolve=True)


def test_auto_values_and_the_new_trainer_keys_validate():
    cfg = _plain("trainer.precision=auto", "data.num_workers=auto", "trainer.compile=true", "trainer.benchmark=false")
    validate(cfg)
    assert (cfg["data"]["num_workers"], cfg["trainer"]["compile"], cfg["trainer"]["benchmark"]) == ("auto", True, False)
    validate(_plain("data.num_workers=3"))


@pytest.mark.parametrize("bad", ["-1", "many", "1.5"])
def test_a_bad_worker_count_names_the_key_and_the_choices(bad):
    with pytest.raises(UserError, match=r"data.num_workers=.*: give a whole number >= 0, or auto\."):
        validate(_plain(f"data.num_workers={bad}"))
