"""Run settings are one typed object (`RunSettings`) from the spec to the node process: every
field is set from the spec, survives the JSON hop to a node process, and a key no one sets
(keep_resume_state, read once but set nowhere) is refused by name."""

import pytest
from pydantic import ValidationError

from xspec.spec.tables.settings import RunSettings
from xspec.study import open_study


def test_the_study_settings_come_from_the_spec_and_survive_the_hop_to_a_node(write_spec,
                                                                             base_spec):
    text = base_spec + ("\n[run]\nworkers = 2\npack = 3\nkeep_checkpoints = \"all\"\n"
                        "grad_checkpointing = true\n")
    text = text.replace("[data]", "[data]\non_bad_image = \"fail\"\nmax_bad_fraction = 0.2", 1)
    settings = open_study(write_spec(text)).settings()
    assert isinstance(settings, RunSettings)
    assert (settings.workers, settings.pack, settings.keep_checkpoints,
            settings.grad_checkpointing) == (2, 3, "all", True)
    assert (settings.on_bad_image, settings.max_bad_fraction) == ("fail", 0.2)
    assert RunSettings.model_validate_json(settings.model_dump_json()) == settings


def test_a_setting_no_one_sets_is_refused_by_name():
    with pytest.raises(ValidationError, match="keep_resume_state"):
        RunSettings.of({"keep_resume_state": True})
    with pytest.raises(ValidationError, match="workers"):
        RunSettings.of({"workers": -1})
    assert RunSettings.of(None) == RunSettings()
