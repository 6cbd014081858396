"""``hub_checkpoint_path``: the file torch.hub downloads a URL to, found without downloading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from learned_sampler import hub_checkpoint_path


def test_hub_checkpoint_path_is_where_torch_hub_keeps_the_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth?raw=true"
    path = hub_checkpoint_path(url)
    assert path == tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert Path(torch.hub.get_dir()) / "checkpoints" == path.parent
    assert not path.exists()  # looking never downloads


@pytest.mark.parametrize("url", ["https://example.com/models/", 3])
def test_hub_checkpoint_path_rejects_a_url_without_a_file(url):
    with pytest.raises(ValueError, match="url"):
        hub_checkpoint_path(url)
