"""Renderer tests run single-threaded: the scenes are tiny, and with other jobs on the machine
multi-threaded tiny ops spend most of their time waiting for a free core."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
