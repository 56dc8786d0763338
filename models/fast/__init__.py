"""The fast paths of the model families, and the one way a family chooses them (`FastPaths`).

A family with fast paths takes `fast: bool = True` in its constructor (params.yaml's `train.fast_paths`,
passed by `models.build_model`) and decides there, once, which of them it runs at its sizes; its repr and
the train stage's log line name them. `fast=False` turns every one of them off: the model then computes
its plain definition, which stands in the family's own file. Each module here computes what that
definition says, faster or in less memory, and its test compares the two through the switch
(tests/test_fast_paths.py, test_nade_fast.py, test_blocked_made.py, test_cpu_fast_paths.py,
test_conv_fast_paths.py). A path that pays on a CPU only tests the device of its input itself.

- blocked_masked_linear.py: a one-mask MADE's layers over the blocks its mask lets through
- nade_blockwise.py: NADE's logits block by block over the pixels, with its own backward pass
- onednn_layout.py: the convolutions in the memory layout oneDNN computes in (PixelCNN, Gated PixelCNN),
  and a Gated PixelCNN layer's sums arranged for its fast kernels
- cpu_gate.py: the Gated PixelCNN's gate in the form a CPU computes faster
- batch_chunks.py: a large CPU batch in pieces under the allocator's mmap threshold (Gated PixelCNN, transformer)
- padded_attention.py: the transformer's attention with heads padded to whole CPU vectors
"""
from __future__ import annotations

__all__ = ["FastPaths"]


class FastPaths:
    """What a family with fast paths declares: `fast`, its constructor's switch, and `fast_paths`, the
    names of those it runs (none when `fast` is off), decided when the model is built. List it first
    among the bases, so that its `extra_repr` is the one nn.Module prints."""

    fast: bool = True

    @property
    def fast_paths(self) -> list[str]:
        """The fast paths this model runs, each named with where it applies."""
        raise NotImplementedError

    def describe_fast_paths(self) -> str:
        if not self.fast:
            return "fast paths: off"
        return f"fast paths: {', '.join(self.fast_paths) or 'none at these sizes'}"

    def extra_repr(self) -> str:
        return self.describe_fast_paths()
