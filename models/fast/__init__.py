"""The CPU and GPU fast paths of the model families. Each family's file in models/ reads as its
paper's definition and calls its fast path in one place; each module here computes what that
definition says, faster or in less memory, and its test checks that it does
(tests/test_cpu_fast_paths.py, tests/test_nade_fast.py, tests/test_blocked_made.py).

- blocked_masked_linear.py: a one-mask MADE's layers over the blocks its mask lets through (MADE's `blocked`)
- nade_blockwise.py: NADE's logits block by block over the pixels, with its own backward pass
- batch_chunks.py: a large CPU batch in pieces under the allocator's mmap threshold (Gated PixelCNN, transformer)
- padded_attention.py: the transformer's attention with heads padded to whole CPU vectors
- cpu_gate.py: the Gated PixelCNN's gate in the form a CPU computes faster
"""
