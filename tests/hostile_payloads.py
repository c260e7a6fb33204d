"""Model files that are programs with side effects, for the hostile-input tests.

Each TorchScript module overwrites the first bytes of an existing ``marker`` file (through
``torch.from_file(shared=True)``, a memory map) — one in ``forward``, one in ``__setstate__``,
which ``torch.jit.load`` runs. A test passes only if the marker is unchanged. TorchScript
compiles from source files, so the classes live in this module, not inside a test function.
"""

from __future__ import annotations

import torch
from torch import nn

MARKER_BYTES = b"\0\0\0\0"


class WritesInForward(nn.Module):
    def __init__(self, marker: str, width: int = 12):
        super().__init__()
        self.marker = marker
        self.fc = nn.Linear(width, width)

    def forward(self, x):
        t = torch.from_file(self.marker, shared=True, size=4, dtype=torch.uint8)
        t.fill_(65)
        return self.fc(x) + t[0].float() * 0  # used, so the compiler keeps the write


class WritesInSetstate(nn.Module):
    def __init__(self, marker: str, width: int = 12):
        super().__init__()
        self.marker = marker
        self.w = torch.eye(width)

    def forward(self, x):
        return x @ self.w

    @torch.jit.export
    def __getstate__(self):
        return (self.marker, self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, torch.Tensor, bool]):
        self.marker = state[0]
        self.training = state[2]
        t = torch.from_file(self.marker, shared=True, size=4, dtype=torch.uint8)
        t.fill_(66)
        self.w = state[1] + t[0].float() * 0


def write_torchscript_payloads(directory, marker) -> dict[str, object]:
    """Save both payloads into ``directory``; returns {name: path}."""
    marker.write_bytes(MARKER_BYTES)
    out = {}
    for name, cls in (("ts_forward.pt", WritesInForward), ("ts_setstate.pt", WritesInSetstate)):
        path = directory / name
        torch.jit.save(torch.jit.script(cls(str(marker))), str(path))
        out[name] = path
    marker.write_bytes(MARKER_BYTES)  # scripting may not run them, but be sure
    return out
