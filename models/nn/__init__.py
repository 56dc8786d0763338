"""Building blocks that several model families share; each family is one file in models/, and the
families' fast paths are in models/fast/.

- masked_linear.py: `MaskedLinear`, `MaskedMLP`, MADE's degrees and masks (FVSBN, MADE, MAF)
- masked_conv.py: PixelCNN's masked convolution
- conv_autoregressive.py: `ConvolutionalAutoregressive`, the base of PixelCNN and Gated PixelCNN (the
  PixelCNN head), and `channels_last`
- conv_steps.py: one-position convolution steps for their pixel-by-pixel sampling
- causal_embedding.py: `CausalPixelEmbedding` (RNN, transformer)
- sampling.py: what the autoregressive families' own `fill` shares (`first_position_to_fill`,
  `one_thread_on_cpu`)
- pixel_distributions.py: a pixel's distribution (Bernoulli, discretized logistic mixture, softmax)
- transforms.py: the flow algebra (`Transform` returning `(y, log_det)`, `Compose`, couplings, ...)
- dequantized.py: dequantizers and `DequantizedFlow`, the base of RealNVP, Glow and MAF
"""
