"""evaluate: test-set NLL (nats per image, with its standard error) and bits per dimension for one
trained model, the estimator that produced them, the negative ELBO beside it for the models that
have one (`negative_elbo`), and pictures: samples for every model, and for
the models that have the capability, completions of test images from their top half (`complete`),
Bernoulli means beside the samples (`sample_means`), reconstructions, latent interpolations and
a 2-D latent scatter (`encode` / `decode`); and for every model the sample-quality scores of the
digit classifier (Inception Score, Frechet distance to the test set; pipeline/digit_classifier.py)."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from models.base import (
    CanComplete,
    ClassConditional,
    HasComponentMeans,
    HasLatentCode,
    HasNegativeELBO,
    HasSampleMeans,
    bits_per_dim,
    labels_kwarg,
    mean_and_stderr,
)
from models.checkpoint import load_checkpoint
from pipeline import params as P
from pipeline import stage
from pipeline.data import binarize_images, check_model_fits, load_labels, load_split
from pipeline.devices import device_for
from pipeline.digit_classifier import TrainedClassifier, load_classifier, quality_scores
from pipeline.figures import save_grid, top_half_mask
from pipeline.io import atomic_dir, atomic_path
from pipeline.layout import DATASETS, Dataset
from pipeline.model_params import model_spec
from pipeline.progress import progress, sampling_bar
from pipeline.results import SAMPLES_FIGURE, EvalTiming, Metrics, ModelResults

COMPLETIONS_PER_IMAGE = 5
INTERPOLATION_STEPS = 10
CONDITIONAL_PER_DIGIT = 10  # samples per row of the class-conditional grid


@torch.no_grad()
def per_image(estimate, data: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """`estimate(batch)` (one number per image) over `data`, batch by batch, in float64 on the CPU."""
    starts = progress(range(0, len(data), batch_size), "evaluating", unit="batch")
    return torch.cat([estimate(data[i:i + batch_size].to(device)).double().cpu() for i in starts])


def per_image_nll(model, data: torch.Tensor, batch_size: int) -> torch.Tensor:
    return per_image(model.nll, data, batch_size, model.device)


def save_per_image(path: Path, nll: torch.Tensor) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, nll.numpy())


def nll_metrics(model, nll: torch.Tensor) -> dict:
    mean, stderr = mean_and_stderr(nll)
    return {"test_nll": mean, "test_nll_stderr": stderr,
            "test_bpd": bits_per_dim(mean, model.num_pixels),
            "estimator": model.estimator, "test_images": len(nll)}


def conditional_metrics(model, test: torch.Tensor, labels: torch.Tensor, batch_size: int) -> tuple[dict, torch.Tensor]:
    """For a class-conditional model: the conditional test NLL -log p(x | y), and the generative
    classifier argmax_y p(x | y) p(y): its accuracy and the NLL of the true labels, -log p(y | x)
    (named by the model's estimator: exact, or from importance-sampled estimates for a VAE). Also
    returns the per-image marginal NLL -log p(x), from the same numbers."""
    joint = per_image(model.class_log_joint, test, batch_size, model.device)  # (N, classes)
    log_evidence = torch.logsumexp(joint, 1)
    true = joint[torch.arange(len(joint)), labels]
    conditional, stderr = mean_and_stderr(-(true - model.label_log_prior.double().cpu()[labels]))
    label_nll, label_stderr = mean_and_stderr(log_evidence - true)
    return {"test_conditional_nll": conditional, "test_conditional_nll_stderr": stderr,
            "generative_accuracy": float((joint.argmax(1) == labels).double().mean()),
            "test_label_nll": label_nll, "test_label_nll_stderr": label_stderr,
            "label_nll_estimator": model.estimator}, -log_evidence


def elbo_metrics(model, test: torch.Tensor, batch_size: int) -> dict:
    """The negative ELBO, an upper bound on the NLL looser than test_nll, for models that have one."""
    if not isinstance(model, HasNegativeELBO):
        return {}
    mean, stderr = mean_and_stderr(per_image(model.negative_elbo, test, batch_size, model.device))
    return {"test_neg_elbo": mean, "test_neg_elbo_stderr": stderr}


def seeded(model, seed: int) -> torch.Generator:
    return torch.Generator(model.device).manual_seed(seed)


@torch.no_grad()
def draw_samples(model, cfg: P.EvaluateConfig, quality_samples: int) -> torch.Tensor:
    """One draw serves both the grid (the first `cfg.samples`) and the sample-quality scores (the
    first `quality_samples`): an autoregressive model's sampling costs a pass per pixel."""
    return model.sample(max(cfg.samples, quality_samples), seeded(model, cfg.seed))


def render_figures(model, samples: torch.Tensor, test: torch.Tensor, labels: torch.Tensor,
                   cfg: P.EvaluateConfig, out_dir: Path) -> list[Path]:
    """The first `cfg.samples` of `samples` (drawn by `draw_samples`) as a grid, and what the
    model's optional capabilities allow. Returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    nrow = math.isqrt(cfg.samples)
    levels = model.pixel_levels
    written = [out_dir / SAMPLES_FIGURE]
    save_grid(samples[:cfg.samples], written[0], nrow, levels)
    if isinstance(model, HasSampleMeans):  # the same seed and count: the means of the very samples above
        written.append(out_dir / "sample_means.png")
        save_grid(model.sample_means(len(samples), seeded(model, cfg.seed))[:cfg.samples], written[-1], nrow)
    if isinstance(model, ClassConditional):  # one row per digit
        written.append(out_dir / "conditional_samples.png")
        digits = torch.arange(len(model.label_log_prior)).repeat_interleave(CONDITIONAL_PER_DIGIT)
        save_grid(model.sample(len(digits), seeded(model, cfg.seed), labels=digits), written[-1], CONDITIONAL_PER_DIGIT,
                  levels)
    if isinstance(model, HasComponentMeans):
        written.append(out_dir / "component_means.png")
        save_grid(model.component_means(), written[-1], nrow=10)
    if isinstance(model, CanComplete):
        written.append(completions(model, test, cfg, out_dir / "completions.png", seeded(model, cfg.seed),
                                   labels if isinstance(model, ClassConditional) else None))
    if isinstance(model, HasLatentCode) and not isinstance(model, ClassConditional):
        written += latent_figures(model, test, labels, cfg, out_dir)
    return written


@torch.no_grad()
def completions(model, test, cfg, path: Path, generator, labels: torch.Tensor | None = None) -> Path:
    """Rows of: the test image, its top half, then completions of the bottom half (given each
    image's label, for a class-conditional model)."""
    originals = test[:cfg.completions].to(model.device)
    observed = top_half_mask(originals)
    shown = torch.where(observed, originals, torch.full_like(originals, (model.pixel_levels - 1) / 2))
    repeats = originals.repeat_interleave(COMPLETIONS_PER_IMAGE, 0)
    repeated_labels = None if labels is None else labels[:cfg.completions].repeat_interleave(COMPLETIONS_PER_IMAGE, 0)
    completed = model.complete(repeats, observed.repeat_interleave(COMPLETIONS_PER_IMAGE, 0), generator,
                               **labels_kwarg(repeated_labels))
    rows = torch.cat([originals[:, None], shown[:, None],
                      completed.view(len(originals), COMPLETIONS_PER_IMAGE, *originals.shape[1:])], 1)
    save_grid(rows.flatten(0, 1), path, COMPLETIONS_PER_IMAGE + 2, model.pixel_levels)
    return path


@torch.no_grad()
def latent_figures(model, test, labels, cfg, out_dir: Path) -> list[Path]:
    """Reconstructions, straight-line interpolations between test images in latent space, and a
    scatter of the test set's codes coloured by digit when the code is two-dimensional."""
    n = min(cfg.completions, len(test) // 2)
    first, second = test[:n].to(model.device), test[n:2 * n].to(model.device)
    z0, z1 = model.encode(first), model.encode(second)
    paths = [out_dir / "reconstructions.png", out_dir / "interpolations.png"]
    save_grid(torch.cat([first, model.decode(z0)]), paths[0], n, model.pixel_levels)
    weights = torch.linspace(0, 1, INTERPOLATION_STEPS, device=model.device)
    path_z = torch.stack([(1 - w) * z0 + w * z1 for w in weights], 1)  # (n, steps, ...)
    save_grid(model.decode(path_z.flatten(0, 1)), paths[1], INTERPOLATION_STEPS, model.pixel_levels)
    if z0.flatten(1).shape[1] != 2:  # no scatter, so no need to encode the whole test set
        return paths
    codes = torch.cat([model.encode(test[i:i + cfg.batch_size].to(model.device)).flatten(1).cpu()
                       for i in range(0, len(test), cfg.batch_size)])
    paths.append(out_dir / "latent_scatter.png")
    latent_scatter(codes, labels, paths[-1])
    return paths


def latent_scatter(codes: torch.Tensor, labels: torch.Tensor, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 5))
    points = ax.scatter(codes[:, 0], codes[:, 1], c=labels[:len(codes)], cmap="tab10", s=3)
    fig.colorbar(points, ax=ax, label="digit")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def quality_images(samples: torch.Tensor, levels: int, classifier: TrainedClassifier,
                   seed: int) -> torch.Tensor:
    """The samples as the digit classifier knows digits: grey-level samples binarized the way the
    training data was (a seeded draw), so their scores compare with the binarized test set's."""
    if levels == 2:
        return samples
    generator = torch.Generator().manual_seed(seed)
    return binarize_images(samples * (255 / (levels - 1)), classifier.binarization, generator).float()


def evaluate(name: str, cfg: P.EvaluateConfig, device_setting: str = "auto",
             data: Dataset = DATASETS["binarized"]) -> Metrics:
    """Test metrics (metrics.json: only numbers that the same inputs reproduce exactly; the time
    taken goes to eval.json) and figures."""
    files = ModelResults(name)
    files.require("train", files.checkpoint)
    trained = files.read_train_summary()  # a missing train.json is the same one-line error
    device = device_for(device_setting)
    # TF32 (on by default for cuDNN convolutions) keeps 10 mantissa bits: the test NLL is computed in true fp32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    model, _ = load_checkpoint(files.checkpoint, device)
    model.progress = sampling_bar
    check_model_fits(model, data, str(files.checkpoint))
    test = load_split("test", cfg.max_test, data.folder)
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    test_labels = load_labels("test", cfg.max_test, data.folder)
    conditional = {}
    if isinstance(model, ClassConditional):
        conditional, test_nll = conditional_metrics(model, test, test_labels, cfg.batch_size)
    else:
        test_nll = per_image_nll(model, test, cfg.batch_size)
    elbo = elbo_metrics(model, test, cfg.batch_size)
    classifier = load_classifier()
    samples = draw_samples(model, cfg, classifier.config.quality_samples)
    scored = quality_images(samples[:classifier.config.quality_samples].cpu(), model.pixel_levels, classifier, cfg.seed)
    quality = quality_scores(classifier.model, scored, classifier.reference)
    metrics = Metrics(**nll_metrics(model, test_nll), **conditional, **elbo, **quality, data=data.name,
                      train_flops=trained.train_flops, flops_per_image=trained.flops_per_image)
    timing = EvalTiming(eval_seconds=round(time.perf_counter() - started, 2), device=str(device))
    with atomic_dir(files.figures) as tmp:
        render_figures(model, samples, test, test_labels, cfg, tmp)
    save_per_image(files.per_image_nll, test_nll)
    timing.write(files.timing)
    metrics.write(files.metrics)
    return metrics


def main(argv=None) -> None:
    args = stage.parse_args(__doc__.splitlines()[0], argv, with_model=True)
    params = P.load()
    spec = model_spec(params, args.model)
    metrics = evaluate(spec.name, P.evaluate_config(params), spec.train.device, spec.data)
    elbo = f"; negative ELBO {metrics.test_neg_elbo:.2f}" if metrics.test_neg_elbo is not None else ""
    if metrics.test_conditional_nll is not None:
        elbo += (f"; given the label {metrics.test_conditional_nll:.2f}, generative classifier accuracy "
                 f"{metrics.generative_accuracy:.2%}, label NLL {metrics.test_label_nll:.3f}")
    print(f"evaluate@{spec.name}: test NLL {metrics.test_nll:.2f} ± {metrics.test_nll_stderr:.2f} nats "
          f"({metrics.estimator}), {metrics.test_bpd:.4f} bits/dim on {metrics.test_images} images{elbo}; "
          f"samples: inception score {metrics.inception_score:.2f}, Frechet distance {metrics.frechet_distance:.1f}")


if __name__ == "__main__":
    stage.run_as_script(main)
