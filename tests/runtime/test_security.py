"""Checkpoints load with weights_only=True; a pickle that would run code is refused clearly.
Spec values cannot steer writes outside the workspace."""

import os

import pytest
import torch

from xspec.errors import DataError, XspecError
from xspec.runtime.models import load_state_dict
from xspec.spec.load import load_spec
from xspec.store.workspace import Workspace


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/xspec-pwned",))


def test_code_executing_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": Exploit()}, path)
    if os.path.exists("/tmp/xspec-pwned"):
        os.unlink("/tmp/xspec-pwned")
    with pytest.raises(DataError, match="refused to load with weights_only=True"):
        load_state_dict(path)
    assert not os.path.exists("/tmp/xspec-pwned")


def test_plain_state_dict_loads(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save({"model": {"w": torch.ones(2)}}, path)
    assert torch.equal(load_state_dict(path)["w"], torch.ones(2))


@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs"])
def test_study_names_cannot_leave_the_reports_folder(write_spec, base_spec, name):
    with pytest.raises(XspecError, match="study.name"):
        load_spec(write_spec(base_spec.replace('name = "t"', f'name = "{name}"')))


def test_full_disk_is_detected_before_training(tmp_path):
    with pytest.raises(XspecError, match="MB free"):
        Workspace(tmp_path).ensure_writable(min_free_mb=2**40)
