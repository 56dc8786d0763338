"""Building blocks that several model families share; each family is one file in models/.

- masked_linear.py: `MaskedLinear`, `MaskedMLP`, MADE's degrees and masks (FVSBN, MADE, MAF)
- blocked_masked_linear.py: a one-mask MADE's layers over the blocks its mask lets through
- batch_chunks.py: a large CPU batch in pieces under the allocator's mmap threshold
- masked_conv.py: PixelCNN's masked convolution
- conv_autoregressive.py: `ConvolutionalAutoregressive`, the base of PixelCNN and Gated PixelCNN (the
  PixelCNN head), and `channels_last`
- conv_steps.py: one-position convolution steps for their pixel-by-pixel sampling
- causal_embedding.py: `CausalPixelEmbedding` (RNN, transformer)
- sampling.py: what the autoregressive families' own `fill` shares (`first_position_to_fill`,
  `one_thread_on_cpu`)
- transforms.py: the flow algebra (`Transform` returning `(y, log_det)`, `Compose`, couplings, ...)
- dequantized.py: dequantizers and `DequantizedFlow`, the base of RealNVP, Glow and MAF

This file holds no code: pipeline/digest.py reads a family's imports module by module and does not
list package __init__ files.
"""
