"""Modules used by the CLI error tests (importable as tests.bad_models:Class)."""

import torch


class DataDependent(torch.nn.Module):
    """Branches on a tensor's value: torch.export cannot capture it."""

    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x

    def example_inputs(self, scenario):
        return (torch.randn(3, 5),), {}, {"x": {0: "batch_size"}}


class Tiny(torch.nn.Module):
    """A linear layer on (batch_size, seq_len, 16) inputs."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(16, 32)

    def forward(self, x):
        return torch.relu(self.proj(x))

    def example_inputs(self, scenario):
        return (torch.randn(3, 5, 16),), {}, {"x": {0: "batch_size", 1: "seq_len"}}
