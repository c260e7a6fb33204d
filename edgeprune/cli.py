"""The ``edgeprune`` command line: a thin click layer over the library functions."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import threading
import warnings

import click

from edgeprune import __version__, choices
from edgeprune.errors import EdgepruneError, first_line

SEED = click.IntRange(0, 2**32 - 1)  # what numpy and torch generators accept
seed_option = click.option("--seed", type=SEED, default=0, show_default=True,
                           help="Random seed (0 to 2**32-1).")
ESTIMATORS = click.Choice(choices.ESTIMATORS)
memory_budget_option = click.option(
    "--memory-budget", type=float, default=choices.DEFAULT_MEMORY_BUDGET_GB, show_default=True, metavar="GB",
    help="Memory scoring may hold at once, in GB (finite, > 0).")
data_option = click.option(
    "--data", "data_spec", default="digits", show_default=True, metavar="SPEC",
    help="synthetic6, synthetic16 (regression), digits, mnist5k, breast-cancer, idx:PATH "
         "(MNIST/Fashion-MNIST IDX), npy:PATH or csv:PATH.")


def quantize_options(fn):
    """--quantize, --max-metric-drop and --npz-compression (compress and export)."""
    fn = click.option(
        "--npz-compression", type=click.Choice(["auto", "stored", "deflate", "lzma"]),
        default="auto", show_default=True,
        help="Zip compression of model.npz's members (auto: the smallest; deflate for a board "
             "whose Python lacks the lzma module).")(fn)
    fn = click.option(
        "--max-metric-drop", type=float, default=None, metavar="DROP",
        help="With --quantize: refuse the model if quantization costs more than DROP of test "
             "accuracy (classifier, 0.01 = 1 pp) or of test MSE (autoencoder, relative: 0.01 = "
             "1 %).")(fn)
    return click.option(
        "--quantize", type=click.Choice(["none", "int8", "shared4", "shared5", "shared6"]),
        default="none", show_default=True,
        help="int8: model.npz stores per-row int8 weights and model.onnx/.tflite are int8; "
             "shared4/5/6: codes into 16/32/64 shared values per layer (npz only; see "
             "--codebook-epochs). Decoded at load; the report shows the metrics before/after.")(fn)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _user_errors(fn):
    """Run a command so that a user sees one ``Error: ...`` line and exit 1, never a traceback.

    * :class:`~edgeprune.errors.EdgepruneError` (bad option, file, data, bundle) and ``OSError``
      (the OS names the file) are the user's to fix: their first line is shown.
    * SIGTERM is handled like Ctrl-C (KeyboardInterrupt), so every ``finally`` that removes a
      staging directory runs for both, and the command ends with ``Aborted!``.
    * Library warnings (torch, scikit-learn, numpy) are held back: after a failure the error line
      is the only output; after a success each distinct warning is shown once as ``warning:``.
    * Anything else is a bug: one line asking for a report (EDGEPRUNE_DEBUG=1 re-raises it).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _sigterm_as_interrupt(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            try:
                result = fn(*args, **kwargs)
            except (click.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except EdgepruneError as exc:
                raise click.ClickException(first_line(exc)) from None
            except OSError as exc:  # the OS names the path: "[Errno 13] Permission denied: 'x'"
                raise click.ClickException(_os_error_line(exc)) from None
            except ImportError as exc:  # a base install (numpy/scipy/click) runs bundles only
                name = getattr(exc, "name", None) or str(exc)
                raise click.ClickException(
                    f"this command needs the Python package {name!r}, which is not installed; "
                    "install the extras with: pip install 'edgeprune[torch]'"
                ) from None
            except KeyboardInterrupt:
                raise click.Abort() from None
            except MemoryError:
                raise click.ClickException(
                    "out of memory; use a smaller --batch/--samples or a smaller input file"
                ) from None
            except Exception as exc:  # noqa: BLE001 - last resort: one line, traceback on request
                if os.environ.get("EDGEPRUNE_DEBUG"):
                    raise
                raise click.ClickException(
                    f"unexpected {type(exc).__name__}: {first_line(exc)}"
                    " (set EDGEPRUNE_DEBUG=1 for the traceback and please report it)"
                ) from None
        for text in dict.fromkeys(f"{w.category.__name__}: {first_line(str(w.message))}"
                                  for w in caught):
            click.echo(f"warning: {text}", err=True)
        return result

    return wrapper


def _os_error_line(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or first_line(exc)}; check the path and its permissions"


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Raise KeyboardInterrupt on SIGTERM while a command runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _load_model(path, model_opts):
    from edgeprune.checkpoint import load_network

    return load_network(path, **model_opts)


model_options = [
    click.option("--activations", default=None, metavar="A1,A2,..",
                 help="Activations per Linear layer, for a plain state_dict "
                      "(identity, relu, leaky_relu, sigmoid, tanh)."),
    click.option("--latent", type=int, default=None, metavar="L",
                 help="Index of the latent (bottleneck) layer, 1-based, for a plain state_dict."),
    click.option("--batchnorm", type=click.Choice(["before-activation", "after-activation"]),
                 default="before-activation", show_default=True,
                 help="Where each BatchNorm1d of a plain state_dict sits: between its Linear "
                      "and the activation, or after the activation (folded into the next Linear)."),
    click.option("--trust-code", "--trust-pickle", "trust_code", is_flag=True,
                 help="Allow model files that are programs: a pickled nn.Module or TorchScript "
                      "(loading runs code from the file). --trust-pickle is the old name."),
]


scoring_options = [
    click.option("--estimator", default="auto", show_default=True, type=ESTIMATORS,
                 help="Shapley estimator (auto: linear/exact/analytic/permutation, measured "
                      "per layer)."),
    click.option("--samples", type=click.IntRange(1), default=256, show_default=True,
                 help="Size of the explanation set, drawn seeded from the training split."),
    click.option("--reference", type=click.Choice(choices.REFERENCES), default="zero",
                 show_default=True, help="Value an absent link is replaced by."),
    seed_option,
    memory_budget_option,
]

#: ``score`` and ``compress`` (``explain`` has a --background of its own, for --loadings).
background_option = click.option(
    "--background", "background", type=click.IntRange(1), default=16, show_default=True,
    metavar="K", help="With --reference background: the K explanation samples whose average "
                      "game is played (interventional SHAP; K games per layer).")


def _with_options(options):
    def decorate(fn):
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return decorate


MODEL_OPTION_NAMES = ("activations", "latent", "batchnorm", "trust_code")


def with_model_options(fn):
    """The model options, handed to the command as one ``model_opts`` dict (the keyword
    options of :func:`edgeprune.checkpoint.load_network`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        model_opts = {name: kwargs.pop(name) for name in MODEL_OPTION_NAMES}
        return fn(*args, model_opts=model_opts, **kwargs)

    return _with_options(model_options)(wrapper)
with_scoring_options = _with_options(scoring_options)


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="edgeprune")
def main() -> None:
    """Shapley-value pruning (SHAP-SAE) of autoencoders and MLPs for edge devices."""


SHAPNET_DEFAULTS = {"target": "auto", "active_size": 2, "transforms": None, "modules": None,
                    "channels": 8, "shapnet_reference": "mean", "explanation_l1": 0.0,
                    "l1_layers": "last", "explanation_smooth": 0.0}


def shapnet_options(fn):
    """The ShapNet options of ``train`` (``--task shapnet-shallow|shapnet-deep`` only)."""
    for option in reversed([
        click.option("--target", type=click.Choice(["auto", "regression", "classification"]),
                     default=None, help="ShapNets: regression on float targets (synthetic16, "
                     "npy: with a float y) or classification on labels  [default: auto]."),
        click.option("--active-size", type=click.IntRange(1, 4), default=None, metavar="K",
                     help="ShapNets: inputs per Shapley module (1-4; Deep: >= 2)  [default: 2]."),
        click.option("--transforms", type=click.IntRange(1, 64), default=None, metavar="L",
                     help="Deep ShapNet: Shapley transforms (butterfly stages)  "
                          "[default: log_K of the padded width]."),
        click.option("--modules", type=click.IntRange(1), default=None, metavar="N",
                     help="Shallow ShapNet: Shapley modules  [default: 2*ceil(d/K)]."),
        click.option("--channels", type=click.IntRange(1, 4096), default=None,
                     help="ShapNets: channels per feature between transforms (Deep) or per "
                          "module output (Shallow)  [default: 8]."),
        click.option("--reference", "shapnet_reference", type=click.Choice(["mean", "zero"]),
                     default=None, help="ShapNets: the input reference (absent features), the "
                     "training mean or zero  [default: mean]."),
        click.option("--explanation-l1", type=float, default=None, metavar="λ",
                     help="ShapNets: ℓ1 penalty on the explanation (paper §2.4)  [default: 0]."),
        click.option("--l1-layers", type=click.Choice(["last", "all"]), default=None,
                     help="ShapNets: --explanation-l1 on the last representation or on every "
                          "Shapley representation  [default: last]."),
        click.option("--explanation-smooth", type=float, default=None, metavar="λ",
                     help="ShapNets: ℓ∞ penalty (largest attribution per sample, §2.4)  "
                          "[default: 0]."),
    ]):
        fn = option(fn)
    return fn


def _train_shapnet(task, data_spec, hidden, activation, epochs, lr, batch_size, seed, output,
                   quiet, shapnet):
    """``train --task shapnet-*``: the options into the library's spec objects."""
    from edgeprune.shapnet.training import Regularisation, ShapNetSpec, train_shapnet_file
    from edgeprune.train import parse_hidden

    opts = {k: (SHAPNET_DEFAULTS[k] if v is None else v) for k, v in shapnet.items()}
    spec = ShapNetSpec(kind=task, active_size=opts["active_size"],
                       transforms=opts["transforms"], modules=opts["modules"],
                       channels=opts["channels"], hidden=tuple(parse_hidden(hidden or "32")),
                       activation=activation, reference=opts["shapnet_reference"])
    reg = Regularisation(l1=opts["explanation_l1"], l1_layers=opts["l1_layers"],
                         smooth=opts["explanation_smooth"])
    return train_shapnet_file(data_spec, spec, target=opts["target"], reg=reg, epochs=epochs,
                              lr=lr, batch_size=batch_size, seed=seed, output=output, quiet=quiet)


@main.command(context_settings=CONTEXT)
@data_option
@click.option("--task", type=click.Choice(["autoencode", "classify", "vae", "shapnet-shallow",
                                           "shapnet-deep"]), default="autoencode",
              show_default=True, help="classify: an MLP classifier (softmax cross-entropy, "
              "logits out, needs labelled data) instead of an autoencoder; vae: a variational "
              "autoencoder (mu and log-variance heads, trained by the beta-ELBO); shapnet-shallow "
              "/ shapnet-deep: a ShapNet that returns its own Shapley values (ICLR 2021).")
@click.option("--hidden", default=None,
              help="Encoder widths, mirrored (default 32,8); a VAE's trunk widths before its "
                   "heads (default 64); a classifier's hidden widths (default 40); a ShapNet's "
                   "inner-MLP widths (default 32).")
@click.option("--latent-dim", type=click.IntRange(1), default=8, show_default=True,
              help="--task vae: latent units (the size of the mu and log-variance heads).")
@click.option("--likelihood", type=click.Choice(["gaussian", "bernoulli"]), default="gaussian",
              show_default=True,
              help="--task vae: the decoder's likelihood (gaussian: identity output, unit "
                   "variance; bernoulli: sigmoid output, data in [0, 1]).")
@click.option("--beta", type=click.FloatRange(0), default=1.0, show_default=True,
              help="--task vae: weight of the KL term (beta-VAE; for a Gaussian likelihood also "
                   "the observation variance).")
@click.option("--kl-anneal-epochs", type=click.IntRange(0), default=0, show_default=True,
              help="--task vae: raise the KL weight linearly from 0 to --beta over N epochs.")
@click.option("--activation", default="relu", show_default=True,
              help="Hidden activation: identity, relu, leaky_relu, sigmoid or tanh.")
@click.option("--latent-activation", default=None, help="Activation of the latent layer.")
@click.option("--output-activation", default="sigmoid", show_default=True,
              help="Activation of the reconstruction (sigmoid for data in [0, 1]).")
@click.option("--epochs", type=click.IntRange(0), default=20, show_default=True,
              help="Training epochs.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True,
              help="Mini-batch size.")
@seed_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint to write (model.pt).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@shapnet_options
@_user_errors
@click.pass_context
def train(ctx, data_spec, hidden, activation, latent_activation, output_activation, epochs, lr,
          batch_size, seed, output, quiet, latent_dim, likelihood, beta, kl_anneal_epochs,
          task="autoencode", **shapnet):
    """Train a symmetric autoencoder (or, with --task classify, an MLP classifier; with --task
    vae, a variational autoencoder; with --task shapnet-shallow|shapnet-deep, a ShapNet) and
    write an edgeprune checkpoint."""
    from edgeprune.output_dir import check_output_file
    from edgeprune.workflows import train_autoencoder

    check_output_file(output, {"data file": data_spec})
    if task.startswith("shapnet-"):
        click.echo(_train_shapnet(task, data_spec, hidden, activation, epochs, lr, batch_size,
                                  seed, output, quiet, shapnet))
        return
    given = [k for k, v in shapnet.items() if v is not None]
    if given:
        name = "--reference" if given[0] == "shapnet_reference" else (
            "--" + given[0].replace("_", "-"))
        raise EdgepruneError(f"{name} applies to --task shapnet-shallow or shapnet-deep only")
    if task == "vae":  # the output activation follows the likelihood unless given
        from edgeprune.workflows import train_vae_file

        given = ctx.get_parameter_source("output_activation") != click.core.ParameterSource.DEFAULT
        click.echo(train_vae_file(data_spec, latent_dim=latent_dim, hidden=hidden or "64",
                                  activation=activation,
                                  output_activation=output_activation if given else None,
                                  likelihood=likelihood, beta=beta,
                                  kl_anneal_epochs=kl_anneal_epochs, epochs=epochs, lr=lr,
                                  batch_size=batch_size, seed=seed, output=output, quiet=quiet))
        return
    if task == "classify":  # --latent-activation/--output-activation do not apply
        from edgeprune.train import train_classifier_file

        click.echo(train_classifier_file(data_spec, hidden=hidden or "40",
                                         activation=activation, epochs=epochs, lr=lr,
                                         batch_size=batch_size, seed=seed, output=output,
                                         quiet=quiet))
        return
    hidden = hidden or "32,8"
    summary = train_autoencoder(data_spec, hidden=hidden, activation=activation,
                                latent_activation=latent_activation,
                                output_activation=output_activation, epochs=epochs, lr=lr,
                                batch_size=batch_size, seed=seed, output=output, quiet=quiet)
    click.echo(summary)


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(dir_okay=False))
@data_option
@with_scoring_options
@click.option("--target-rel-error", type=click.FloatRange(0, min_open=True), default=None,
              help="Accuracy target of auto (default 0.05) or of the permutation estimator.")
@background_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Scores file to write (.npz).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@with_model_options
@_user_errors
def score(model, data_spec, estimator, samples, reference, seed, memory_budget, target_rel_error,
          background, output, as_json, quiet, model_opts):
    """Score every link of MODEL with Shapley values (SHAP-SAE eq. 3-4)."""
    from edgeprune.compress import check_data_matches
    from edgeprune.data import explanation_set, load_dataset
    from edgeprune.output_dir import check_output_file
    from edgeprune.scoring import memory_budget_bytes, save_scores, score_network

    check_output_file(output, {"model file": model, "data file": data_spec})
    net = _load_model(model, model_opts)
    ds = load_dataset(data_spec, seed=seed)
    check_data_matches(net, ds)
    scores = score_network(net, explanation_set(ds, samples, seed), estimator=estimator,
                           reference=reference, seed=seed, target_rel_error=target_rel_error,
                           memory_budget=memory_budget_bytes(memory_budget), quiet=quiet,
                           background=background)
    save_scores(scores, output)
    summary = scores.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        for row in summary["layers"]:
            click.echo(f"layer {row['layer']}: {row['shape'][0]}x{row['shape'][1]} "
                       f"{row['estimator']:<11} {row['seconds']:.2f}s")
        over = summary["peak_memory_bytes"] > summary["memory_budget_bytes"]
        click.echo(f"{summary['seconds']:.2f}s in all, peak memory "
                   f"{summary['peak_memory_bytes'] / 1024**2:.0f} MiB "
                   f"(budget {summary['memory_budget_bytes'] / 1024**2:.0f} MiB"
                   + ("; exceeded: one block of work plus torch's own buffers need more" if over
                      else "") + ")")
        click.echo(f"wrote {output}")


class AlphaType(click.ParamType):
    """``--alpha``: a number in [0, 1] or ``auto``."""

    name = "[0..1|auto]"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or value == "auto":
            return value
        try:
            alpha = float(value)
        except ValueError:
            alpha = -1.0
        if not 0.0 <= alpha <= 1.0:
            self.fail(f"{value!r} is not a number in [0, 1] or auto", param, ctx)
        return alpha


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(dir_okay=False))
@data_option
@click.option("-m", "--importance-level", type=float, default=None,
              help="SHAP-SAE importance level m in (0, 1]: keep, per layer, the fewest links "
                   "carrying m of the layer's total importance.  [one of -m/--sparsity/--target-macs/--target-size/--target-latency required]")
@click.option("--sparsity", type=float, default=None,
              help="Target sparsity eta in [0, 1): the fraction of links to remove.  "
                   "[one of -m/--sparsity/--target-macs/--target-size/--target-latency required]")
@click.option("--target-macs", type=click.IntRange(1), default=None, metavar="N",
              help="Budget: at most N multiply-adds per inference; prunes as little as that "
                   "allows.")
@click.option("--target-size", type=click.IntRange(1), default=None, metavar="BYTES",
              help="Budget: model.npz of at most BYTES (with --quantize as given); prunes as "
                   "little as that allows.")
@click.option("--target-latency", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="US",
              help="Budget: at most US microseconds per sample (batch 1, in --latency-engine, "
                   "predicted by this machine's kernel cost model); removes whole units "
                   "where that costs less validation loss than removing links.")
@click.option("--latency-engine", type=click.Choice(["numpy", "numba"]), default="numpy",
              show_default=True,
              help="With --target-latency: the runtime engine whose one-sample latency the "
                   "budget is for (numba: load(path, engine='numba'), needs numba).")
@click.option("--method", default="shap-sae", show_default=True,
              type=click.Choice(choices.METHODS),
              help="Link scores: Shapley values (SHAP-SAE) or a baseline.")
@with_scoring_options
@background_option
@click.option("--scores", "scores_path", default=None, type=click.Path(dir_okay=False),
              help="Reuse link scores written by `edgeprune score`.")
@click.option("--score-rule", default=choices.DEFAULT_SCORE_RULE, show_default=True,
              type=click.Choice(choices.SCORE_RULES),
              help="shap-sae link score: paper (mean |phi|, eq. 3), rms (root mean square of "
                   "phi) or hybrid (LI^alpha * |w|^(1-alpha)).")
@click.option("--alpha", type=AlphaType(), default=str(choices.DEFAULT_ALPHA),
              show_default=True, help="Exponent of LI in --score-rule hybrid (0: magnitude, "
                                      "1: paper), or auto: the one of 0, .25, .5, .75, 1 whose "
                                      "pruned network has the lowest validation loss.")
@click.option("--steps", type=click.IntRange(1), default=1, show_default=True,
              help="Gradual pruning: reach --sparsity in N steps of a cubic schedule, "
                   "re-scoring and fine-tuning between steps (the --finetune-epochs are shared).")
@click.option("--compensate", is_flag=True,
              help="Replace each pruned link by its mean instead of 0: every live unit's bias "
                   "is set to keep its mean pre-activation on the training split (the "
                   "consistent pruning for --reference mean; works with every --method).")
@click.option("--allocation", type=click.Choice(choices.ALLOCATIONS), default="layer",
              show_default=True,
              help="How --sparsity is shared between layers: layer (the paper's level m in "
                   "every layer) or global (one budget over scores divided by their layer's "
                   "mean).")
@click.option("--reconstruct/--no-reconstruct", default=None,
              help="After pruning, refit the kept weights and biases layer by layer (input to "
                   "output) by least squares, so that each layer's pre-activations on the "
                   "training split match the unpruned model's; the mask is not changed "
                   "(every --method, --steps and --target-*; not for VAEs).  [default: on for "
                   "--method shap-sae without --compensate, off for the baselines and VAEs]")
@click.option("--reconstruct-ridge", type=click.FloatRange(min=0), default=None,
              metavar="LAMBDA",
              help="Ridge of --reconstruct, relative to the mean diagonal of each layer's input "
                   f"Gram matrix; pulls towards the pruned weights  [default: "
                   f"{choices.DEFAULT_RECONSTRUCT_RIDGE:g}]")
@click.option("--finetune-epochs", type=click.IntRange(0), default=0, show_default=True,
              help="Epochs of masked fine-tuning after pruning (pruned links stay zero).")
@click.option("--finetune-lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Adam's learning rate in the masked fine-tune  [default: 3e-3 for an "
                   "autoencoder, 1e-3 for a VAE or classifier]")
@click.option("--distill", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              metavar="W",
              help="Knowledge distillation in the fine-tune: weight W of matching the unpruned "
                   "network (the teacher) against 1 - W of the reconstruction loss; 0: off.")
@click.option("--distill-on", type=click.Choice(choices.DISTILL_TARGETS), default="all",
              show_default=True,
              help="With --distill: match the teacher's every layer (hidden codes and "
                   "reconstruction) or only its reconstruction.")
@click.option("--finetune-schedule", type=click.Choice(choices.LR_SCHEDULES),
              default="constant", show_default=True,
              help="The fine-tune's learning rate: constant, or cosine decay to 0.")
@click.option("--codebook-epochs", type=click.IntRange(0), default=0, show_default=True,
              help="With --quantize shared4/5/6: epochs of fine-tuning the shared values "
                   "(each centroid moves by its members' summed gradient) after --finetune-epochs.")
@click.option("--export", "export_formats", default="auto", show_default=True,
              help="Artifacts besides model.npz: onnx,tflite (auto: every installed format).")
@click.option("--onnx-sparse-initializers", is_flag=True,
              help="Store ONNX weights as sparse initializers (smaller file; ORT densifies).")
@click.option("--tflite-sparse", is_flag=True, help="Store TFLite weights as sparse tensors.")
@quantize_options
@click.option("--granularity", default="link", show_default=True,
              type=click.Choice(["link", "neuron", "neuron,link"]),
              help="What to prune: links, whole units (neuron, removed physically) or units "
                   "first, then links with -m/--sparsity (neuron,link).")
@click.option("--strategy", default=None, metavar="NAME:VALUE",
              help="Neuron strategy: svbottom:k, svbottom-p:p, svbucket:p, random:k, wbottom:k.")
@click.option("--threshold", default=None, metavar="T",
              help="Neuron walk stops below it: min validation accuracy (classifier), max "
                   "MSE (autoencoder), or a factor of the unpruned metric such as 0.98x.")
@click.option("--retrain-epochs", type=click.IntRange(0), default=2, show_default=True,
              help="Retraining epochs after each neuron-pruning step.")
@click.option("--neuron-estimator", default="auto", show_default=True,
              type=click.Choice(choices.NEURON_ESTIMATORS),
              help="Shapley estimator of the neuron game (auto: exact up to 12 units).")
@click.option("--neuron-samples", type=click.IntRange(2), default=None,
              help="Permutations (default 100) or subsets (default 500) of the neuron game.")
@click.option("--silence", type=click.Choice(choices.SILENCE), default="zero",
              show_default=True, help="What a unit outside a coalition emits.")
@click.option("--neuron-layers", default=None, metavar="all|L1,L2",
              help="Hidden layers whose units are pruned, in turn (default: all).")
@click.option("--truncation", "neuron_truncation", type=float, default=None,
              help="Truncate a permutation once within this fraction of v(all) (TMC).")
@click.option("--drop-logvar", is_flag=True,
              help="A VAE: publish the encoder as mu only (no log-variance head in model.npz "
                   "and the encoder graphs; pruned.pt keeps it).")
@click.option("--likelihood", type=click.Choice(["gaussian", "bernoulli"]), default=None,
              help="A VAE: the likelihood of the ELBO fine-tuning  [default: the model's own]")
@click.option("--beta", type=click.FloatRange(0), default=None,
              help="A VAE: the KL weight of the ELBO fine-tuning  [default: the one it was "
                   "trained with, else 1]")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Output directory; replaced as a whole when the run succeeds.")
@click.option("--json", "as_json", is_flag=True, help="Print report.json instead of the table.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@with_model_options
@_user_errors
def compress(model, data_spec, importance_level, sparsity, method, estimator, reference, samples,
             scores_path, finetune_epochs, seed, memory_budget, export_formats,
             onnx_sparse_initializers, tflite_sparse, quantize, max_metric_drop, npz_compression,
             codebook_epochs, drop_logvar, likelihood, beta, outdir, as_json, quiet, model_opts,
             **neuron):
    """Prune MODEL (SHAP-SAE or a baseline) and write pruned.pt, model.npz and reports."""
    from edgeprune.artifacts import ExportOptions
    from edgeprune.compress import CompressOptions
    from edgeprune.compress import compress as run_compress
    from edgeprune.data import load_dataset
    from edgeprune.scoring import memory_budget_bytes

    opts = CompressOptions(importance_level=importance_level, sparsity=sparsity, method=method,
                           estimator=estimator, reference=reference, samples=samples, seed=seed,
                           finetune_epochs=finetune_epochs, scores_path=scores_path,
                           memory_budget=memory_budget_bytes(memory_budget), quiet=quiet,
                           provenance={"model": str(model)}, export=export_formats,
                           export_options=ExportOptions(onnx_sparse_initializers,
                                                        tflite_sparse, quantize, npz_compression,
                                                        drop_logvar=drop_logvar),
                           max_metric_drop=max_metric_drop, codebook_epochs=codebook_epochs,
                           likelihood=likelihood, beta=beta,
                           **neuron)
    opts.validate()  # bad options and -o fail before the model and data are read
    from edgeprune.output_dir import check_output_dir

    check_output_dir(outdir, "compress", inputs=[model, *([scores_path] if scores_path else [])])
    net = _load_model(model, model_opts)
    ds = load_dataset(data_spec, seed=seed)
    result = run_compress(net, ds, outdir, opts)
    if as_json:
        click.echo(json.dumps(result.report.to_dict(), indent=2))
    else:
        click.echo(str(result.report))
        if result.report.neuron_walk is not None:
            from edgeprune.prune.neuron_walk import walk_summary

            click.echo(walk_summary(result.report.neuron_walk))
        names = ", ".join([f"model.{f}" for f in result.report.artifacts]
                          + [part["file"] for art in result.report.artifacts.values()
                             for part in art.get("parts", {}).values()])
        click.echo(f"wrote {os.path.join(outdir, '')}: pruned.pt, {names}, report.json, "
                   "report.md, manifest.json")


@main.command(context_settings=CONTEXT)
@click.argument("model_or_outdir", type=click.Path())
@click.option("--data", "data_spec", default=None,
              help="Data to score on and to draw the mean input from (default: the data "
                   "compress or train recorded).")
@click.option("-m", "--importance-level", type=float, default=None,
              help="For a model file: SHAP-SAE level m of the pruned-input map  [default: 0.8].")
@click.option("--scores", "scores_path", default=None, type=click.Path(dir_okay=False),
              help="Reuse link scores written by `edgeprune score`.")
@with_scoring_options
@click.option("--top", type=click.IntRange(1), default=10, show_default=True,
              help="How many most/least important inputs the summary names.")
@click.option("--loadings", is_flag=True,
              help="SHAP loadings of an autoencoder or VAE instead: mean |SHAP| and signed mean "
                   "SHAP of each latent unit (the mu head of a VAE) w.r.t. each input feature "
                   "(heatmaps, histograms, loadings.csv/.json/.md).")
@click.option("--explainer", type=click.Choice(choices.LOADING_EXPLAINERS), default="auto",
              show_default=True,
              help="With --loadings: auto (exact up to 12 features, else permutation), exact, "
                   "permutation, shap-permutation (shap.PermutationExplainer), deep "
                   "(shap.DeepExplainer).")
@click.option("--background", type=click.IntRange(0), default=0, show_default=True,
              metavar="N", help="With --loadings: average over N training rows as the "
                                "background (interventional SHAP); 0: the one --reference row.")
@click.option("--permutations", type=click.IntRange(2), default=10, show_default=True,
              help="With --loadings: permutations per sample of the permutation explainers.")
@click.option("--rotation", type=click.Choice(choices.LOADING_ROTATIONS), default="none",
              show_default=True,
              help="With --loadings: varimax rotates the latent code so that each feature "
                   "loads on few units (exact for SHAP; a VAE's prior is rotation invariant).")
@click.option("--features", default=None, metavar="J1,J2,..",
              help="With --loadings: 1-based features to draw SHAP histograms for (e.g. "
                   "150,600); default: the strongest and the weakest feature.")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Output directory; replaced as a whole when the run succeeds.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines or bars.")
@with_model_options
@_user_errors
def explain(model_or_outdir, data_spec, importance_level, scores_path, estimator, samples,
            reference, seed, memory_budget, top, loadings, explainer, background, permutations,
            rotation, features, outdir, quiet, model_opts):
    """Explain MODEL_OR_OUTDIR (a model file or a compress output directory): input unit
    importance, per-layer LI heatmaps, the inputs the pruned model never reads (PNG, 640x480),
    explain.json and explain.md in OUTPUT; with --loadings, the SHAP loadings of its latent
    units instead. A ShapNet model explains itself: its own Shapley values of --samples rows
    (no scoring, no sampling), written as PNGs, .npy and JSON/MD."""
    given = _given_options("importance_level", "scores_path", "estimator", "memory_budget",
                           "explainer", "background", "permutations", "rotation", "features")
    if loadings:
        _not_with(given, "--loadings", importance_level="-m/--importance-level",
                  scores_path="--scores", estimator="--estimator (use --explainer)",
                  memory_budget="--memory-budget")
        return _explain_loadings(model_or_outdir, data_spec, samples, reference, seed, top,
                                 explainer, background, permutations, rotation, features, outdir,
                                 quiet, model_opts)
    _not_with(given, "a link-importance explanation (add --loadings)", explainer="--explainer",
              background="--background", permutations="--permutations",
              rotation="--rotation", features="--features")
    from edgeprune.explain import ExplainOptions
    from edgeprune.explain import explain as run_explain
    from edgeprune.scoring import memory_budget_bytes

    opts = ExplainOptions(importance_level=importance_level, estimator=estimator,
                          reference=reference, samples=samples, seed=seed,
                          memory_budget=memory_budget_bytes(memory_budget), scores_path=scores_path,
                          top=top, quiet=quiet)
    result = run_explain(model_or_outdir, outdir, opts, data_spec=data_spec,
                         **model_opts,
                         progress=None if quiet else lambda msg: click.echo(msg, err=True))
    for line in result.explanation.summary_lines():
        click.echo(line)
    click.echo(f"wrote {os.path.join(outdir, '')}: " + ", ".join(result.files))


def _given_options(*names: str) -> set[str]:
    """Which of ``names`` the user typed (not defaults)."""
    ctx = click.get_current_context()
    return {n for n in names
            if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE}


def _not_with(given: set[str], what: str, **flags: str) -> None:
    for name, flag in flags.items():
        if name in given:
            raise EdgepruneError(f"{flag} does not apply to {what}; leave it out")


def _explain_loadings(source, data_spec, samples, reference, seed, top, explainer, background,
                      permutations, rotation, features, outdir, quiet, model_opts):
    from edgeprune.loadings import LoadingOptions, explain_loadings, parse_features

    opts = LoadingOptions(explainer=explainer, samples=samples, reference=reference,
                          background=background, permutations=permutations,
                          features=parse_features(features), rotation=rotation, top=top,
                          seed=seed, quiet=quiet)
    result = explain_loadings(source, outdir, opts, data_spec=data_spec, **model_opts,
                              progress=None if quiet else lambda msg: click.echo(msg, err=True))
    lo = result.loadings
    for unit, rows in enumerate(lo.top_features(min(3, lo.n_features)), start=1):
        click.echo(f"z{unit}: strongest features " + ", ".join(
            f"{r['name']} ({r['mean_abs']:.3g})" for r in rows))
    click.echo(f"wrote {os.path.join(outdir, '')}: " + ", ".join(result.files))


@main.command(context_settings=CONTEXT)
@click.argument("pruned", type=click.Path())
@click.option("--format", "formats", default="auto", show_default=True,
              help="Comma-separated subset of npz,onnx,tflite (auto: every installed format).")
@click.option("--data", "data_spec", default=None,
              help="Inputs for the parity check (default: the data compress used).")
@click.option("--onnx-sparse-initializers", is_flag=True,
              help="Store ONNX weights as sparse initializers (smaller file; ORT densifies).")
@click.option("--tflite-sparse", is_flag=True, help="Store TFLite weights as sparse tensors.")
@quantize_options
@click.option("--drop-logvar", is_flag=True,
              help="A VAE: publish the encoder as mu only (no log-variance head).")
@seed_option
@click.option("--inner-sparsity", type=float, default=None, metavar="ETA",
              help="ShapNet checkpoints: first prune this fraction of each inner MLP's links "
                   "(SHAP-SAE scores on its masked-copy inputs; no fine-tuning).")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Output directory; replaced as a whole when the run succeeds.")
@with_model_options
@_user_errors
def export(pruned, formats, data_spec, onnx_sparse_initializers, tflite_sparse, quantize,
           max_metric_drop, npz_compression, drop_logvar, seed, inner_sparsity, outdir,
           model_opts):
    """Export PRUNED (a compress output directory or a pruned checkpoint) to npz/ONNX/TFLite,
    each checked against PyTorch on real inputs. A ShapNet checkpoint (train --task
    shapnet-*) is compiled; its artifacts return the prediction and the explanation."""
    from edgeprune.artifacts import ExportOptions, export_pruned

    if _is_shapnet_file(pruned):
        _export_shapnet(pruned, outdir, formats, data_spec, seed, inner_sparsity,
                        onnx_sparse_initializers or tflite_sparse, quantize, max_metric_drop)
        return
    if inner_sparsity is not None:
        raise EdgepruneError("--inner-sparsity prunes a ShapNet's inner MLPs; PRUNED is not a "
                             "ShapNet checkpoint")

    result = export_pruned(pruned, outdir, formats=formats, data_spec=data_spec, seed=seed,
                           options=ExportOptions(onnx_sparse_initializers, tflite_sparse,
                                                 quantize, npz_compression,
                                                 drop_logvar=drop_logvar),
                           max_metric_drop=max_metric_drop, **model_opts)
    for note in result["notes"]:
        click.echo(f"note: {note}")
    for art in result["written"].values():
        click.echo(f"wrote {art['path']} ({art['bytes']} bytes; max |diff| vs PyTorch "
                   f"{art['max_abs_diff_vs_pytorch']:.2e} on {result['data']})")
        for part in art.get("parts", {}).values():
            click.echo(f"wrote {os.path.join(outdir, part['file'])} ({part['bytes']} bytes; "
                       f"max |diff| vs PyTorch {part['max_abs_diff_vs_pytorch']:.2e})")
    if result.get("quantization"):
        from edgeprune.quantization import quantization_lines

        click.echo("\n".join(quantization_lines({"quantization": result["quantization"],
                                                 "artifacts": result["written"]})))


def _is_shapnet_file(path) -> bool:
    try:
        from edgeprune.shapnet.checkpoint import is_shapnet_file
    except ImportError:  # torch missing: not a ShapNet this install can read
        return False
    return is_shapnet_file(path)


def _export_shapnet(source, outdir, formats, data_spec, seed, inner_sparsity, sparse, quantize,
                    max_metric_drop):
    from edgeprune.shapnet.deploy import export_shapnet_checkpoint

    if sparse or quantize != "none" or max_metric_drop is not None:
        raise EdgepruneError("a ShapNet is exported in float32 with dense ONNX/TFLite weights; "
                             "drop --quantize/--max-metric-drop/--onnx-sparse-initializers/"
                             "--tflite-sparse")
    result = export_shapnet_checkpoint(source, outdir, formats=formats, data_spec=data_spec,
                                       seed=seed, inner_sparsity=inner_sparsity)
    for note in result["notes"]:
        click.echo(f"note: {note}")
    pruning = result.get("inner_pruning")
    if pruning:
        metric = ", ".join(f"{k} {pruning['before'].get(k, float('nan')):.4g} -> {v:.4g}"
                           for k, v in pruning["after"].items())
        click.echo(f"pruned {pruning['inner_sparsity']:.1%} of the inner MLPs' links"
                   + (f" ({metric}, no fine-tuning)" if metric else ""))
    c = result["compiled"]
    click.echo(f"compiled {c['transforms']} Shapley transforms, {c['modules']} modules: "
               f"{c['layers']} CSR layers, {c['nnz']} non-zeros")
    for art in result["written"].values():
        click.echo(f"wrote {art['path']} ({art['bytes']} bytes; max |diff| vs PyTorch "
                   f"prediction {art['max_abs_diff_prediction']:.2e}, explanation "
                   f"{art['max_abs_diff_explanation']:.2e} on {result['data']})")


@main.command(context_settings=CONTEXT)
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.argument("inputs", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Where to write the outputs (.npy); never the bundle or the inputs.")
@click.option("--kernel", type=click.Choice(["auto", "dense", "csr"]), default="auto", help="Layer kernel (auto: dense or CSR by density).",
              show_default=True)
@click.option("--engine", type=click.Choice(["numpy", "numba"]), default="numpy",
              show_default=True,
              help="numba: one compiled call per sample over all layers (pip install "
                   "'edgeprune[fast]'); numpy: always available.")
@click.option("--encode", "mode", flag_value="encode", help="Return the latent code.")
@click.option("--decode", "mode", flag_value="decode", help="Inputs are latent codes.")
@click.option("--explanations", type=click.Path(dir_okay=False), default=None,
              help="ShapNet bundles: also write the per-feature Shapley values (.npy, "
                   "samples x features x outputs).")
@click.option("--skip-threshold", type=float, default=None, metavar="T",
              help="ShapNet bundles: skip the Shapley modules whose inputs are all within T "
                   "of their reference (dynamic pruning; 0 changes no output).")
@click.option("--logvar", "mode", flag_value="logvar",
              help="A VAE: return the log-variance of the latent code (--encode gives its mean).")
@_user_errors
def run(bundle, inputs, output, kernel, engine, mode, explanations, skip_threshold):
    """Run a model.npz bundle on INPUTS (.npy) with the edgeprune runtime; write OUTPUT (.npy).

    For a ShapNet bundle OUTPUT is the prediction; --explanations writes its Shapley values."""
    from edgeprune.runtime.bundle import read_bundle
    from edgeprune.workflows import run_bundle, run_shapnet_bundle

    shapnet = explanations is not None or skip_threshold is not None
    if not shapnet and mode is None and os.path.isfile(bundle):
        shapnet = read_bundle(bundle).shapnet is not None
    if shapnet:
        if mode is not None:
            raise EdgepruneError(f"--{mode} needs an autoencoder bundle; a ShapNet bundle "
                                 "runs forward only")
        info = run_shapnet_bundle(bundle, inputs, output, explanations=explanations,
                                  skip_threshold=skip_threshold,
                                  kernel="csr" if kernel == "auto" else kernel, engine=engine)
        line = f"wrote {output} {info['prediction']}"
        if explanations is not None:
            line += f" and {explanations} {info['explanation']}"
        if skip_threshold is not None:
            line += (f"; skipped {info['skipped_fraction']:.1%} of {info['modules']} Shapley "
                     f"modules per sample (output change <= {info['bound']:.3g})")
        click.echo(line)
        return
    shape = run_bundle(bundle, inputs, output, kernel=kernel, mode=mode or "forward",
                       engine=engine)
    click.echo(f"wrote {output} {shape}")


@main.command(context_settings=CONTEXT)
@click.argument("artifact", type=click.Path(exists=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@with_model_options
@_user_errors
def info(artifact, as_json, model_opts):
    """Describe an artifact: format, layers, shapes, non-zeros, bytes on disk and gzip bytes."""
    from edgeprune.inspector import describe as describe_artifact
    from edgeprune.inspector import format_info

    desc = describe_artifact(artifact, **model_opts)
    click.echo(json.dumps(desc, indent=2) if as_json else format_info(desc))


ssh_options = [
    click.option("--identity", type=click.Path(dir_okay=False), default=None,
                 help="Private key file for SSH (default: ssh-agent and ~/.ssh/config)."),
    click.option("--ssh-config", type=click.Path(dir_okay=False), default=None,
                 help="An ssh_config file to use instead of ~/.ssh/config (ssh -F)."),
    click.option("--accept-new-host-key", is_flag=True,
                 help="Trust a board's host key on first connection (StrictHostKeyChecking="
                      "accept-new); a changed key is still refused."),
    click.option("--connect-timeout", type=click.IntRange(1, 600), default=10,
                 show_default=True, help="Seconds to wait for each SSH connection."),
    click.option("--remote-dir", default=None, metavar="DIR",
                 help="Deployment directory on the board  [default: ~/edgeprune/<name>]"),
    click.option("--python", "remote_python", default="python3", show_default=True,
                 help="The board's Python (its distribution numpy/scipy are used)."),
]
with_ssh_options = _with_options(ssh_options)


def _deploy_options(identity, ssh_config, accept_new_host_key, connect_timeout, remote_dir,
                    remote_python, dry_run=False):
    from edgeprune.deploy.deploy import DeployOptions
    from edgeprune.deploy.ssh import SshOptions

    ssh = SshOptions(identity=identity, ssh_config=ssh_config,
                     accept_new_host_key=accept_new_host_key, connect_timeout=connect_timeout)
    return DeployOptions(remote_dir=remote_dir, python=remote_python, dry_run=dry_run, ssh=ssh)


@main.command(context_settings=CONTEXT)
@click.argument("artifacts", nargs=-1, type=click.Path())
@click.option("--batch", "batches", default="1,32,256", show_default=True,
              help="Comma-separated batch sizes.")
@click.option("--backends", default="auto", show_default=True,
              help="auto, or some of edgeprune,onnxruntime,litert,torch "
                   "(edgeprune = edgeprune-auto,-csr,-dense).")
@click.option("--warmup", type=click.IntRange(0), default=10, show_default=True,
              help="Untimed calls before each measurement.")
@click.option("--runs", type=click.IntRange(1), default=100, show_default=True,
              help="Timed calls at least, per measurement.")
@click.option("--min-time", type=click.FloatRange(0), default=0.5, show_default=True,
              help="Seconds of timed calls at least, per measurement.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="Threads per backend.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write results JSON.")
@click.option("--md", "md_path", type=click.Path(dir_okay=False), help="Write a Markdown report.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write a PNG latency plot (needs matplotlib).")
@click.option("--profile", "energy_profile", default="generic45nm", show_default=True,
              help="Energy-proxy profile: generic45nm, rpi4, rpi5 or a JSON file.")
@click.option("--calibrate", is_flag=True,
              help="Measure the dense/CSR crossover on this device and save a kernel profile "
                   "(on the layer shapes of the given .npz bundles, else a standard grid).")
@click.option("--profile-out", type=click.Path(dir_okay=False), default=None,
              help="Where --calibrate writes (default: $EDGEPRUNE_HOME or "
                   "~/.config/edgeprune/kernel_profile.json).")
@click.option("--kernel-profile", type=click.Path(dir_okay=False), default=None,
              help="Kernel profile for edgeprune-auto (default: the calibrated one, if any).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.option("--remote", default=None, metavar="[USER@]HOST[:PORT]",
              help="Also run on this board over SSH (deploying ARTIFACTS first, a no-op when "
                   "already there) and report host vs board side by side; --calibrate then "
                   "calibrates the board.")
@click.option("--skip-threshold", "skip_thresholds", type=float, multiple=True, metavar="T",
              help="ShapNet bundles: also time dynamic pruning at batch 1 with this threshold "
                   "(repeatable), on the samples of --inputs; reports modules skipped and "
                   "latency saved per input.")
@click.option("--inputs", "skip_inputs", type=click.Path(dir_okay=False), default=None,
              help="The .npy samples (samples x features) --skip-threshold is measured on.")
@with_ssh_options
@_user_errors
def bench(artifacts, batches, backends, warmup, runs, min_time, threads, json_path, md_path,
          plot_path, energy_profile, calibrate, profile_out, kernel_profile, quiet, remote,
          skip_thresholds, skip_inputs,
          identity, ssh_config, accept_new_host_key, connect_timeout, remote_dir, remote_python):
    """Benchmark ARTIFACTS (model.npz, .onnx, .tflite, pruned.pt or compress output dirs)."""
    from edgeprune import bench as benchmark

    def say(msg: str) -> None:
        if not quiet:
            click.echo(msg, err=True)

    if remote and skip_thresholds:
        raise EdgepruneError("--skip-threshold is measured on this host; drop --remote (or "
                             "run `edgeprune bench --skip-threshold` on the board)")
    if remote:
        _bench_remote(remote, artifacts, batches, warmup, runs, min_time, threads, json_path,
                      md_path, energy_profile, calibrate, say,
                      _deploy_options(identity, ssh_config, accept_new_host_key,
                                      connect_timeout, remote_dir, remote_python))
        return

    opts = benchmark.BenchOptions(batches=benchmark.parse_batches(batches), backends=backends,
                                  warmup=warmup, runs=runs, min_time=min_time, threads=threads,
                                  energy_profile=energy_profile, kernel_profile=kernel_profile,
                                  skip_thresholds=skip_thresholds, skip_inputs=skip_inputs)
    opts.validate()
    if calibrate:
        path = benchmark.calibrate_device(artifacts, opts, profile_out, progress=say)
        click.echo(f"wrote kernel profile {path}")
        if not artifacts:
            return
        opts.kernel_profile = path
    elif not artifacts:
        raise click.UsageError("give at least one ARTIFACT (or --calibrate)")
    results = benchmark.run(artifacts, opts, progress=say)
    written, notes = benchmark.write_outputs(results, json_path, md_path, plot_path)
    for note in notes:
        click.echo(note, err=True)
    click.echo(benchmark.summary_lines(results))
    if written:
        click.echo("wrote " + ", ".join(written))


@main.command(context_settings=CONTEXT)
@click.argument("artifact_or_outdir", type=click.Path())
@click.option("--host", "hosts", multiple=True, metavar="[USER@]HOST[:PORT]",
              help="A board to deploy to (an alias of ~/.ssh/config works); repeat for several.")
@click.option("--hosts-file", default=None, type=click.Path(dir_okay=False),
              help="A file with one [user@]host[:port] per line (# comments).")
@click.option("--formats", default="npz", show_default=True,
              help="Comma-separated subset of npz,onnx,tflite to ship and verify.")
@click.option("--wheel", default=None, type=click.Path(dir_okay=False),
              help="Ship this edgeprune wheel instead of building one from the source tree.")
@click.option("--wheelhouse", default=None, type=click.Path(file_okay=False),
              help="Also install every .whl in this directory on the board (offline; e.g. "
                   "onnxruntime / ai-edge-litert wheels for aarch64).")
@click.option("--dry-run", is_flag=True, help="Probe the boards and say what would be done.")
@with_ssh_options
@_user_errors
def deploy(artifact_or_outdir, hosts, hosts_file, formats, wheel, wheelhouse, dry_run, identity,
           ssh_config, accept_new_host_key, connect_timeout, remote_dir, remote_python):
    """Deploy ARTIFACT_OR_OUTDIR (model.npz or a compress/export directory) with the numpy/scipy
    runtime to boards over SSH, and verify it there against this host's outputs."""
    from edgeprune.deploy import deploy as dep
    from edgeprune.deploy.package import FORMATS, build_package

    chosen = tuple(dict.fromkeys(f.strip() for f in formats.split(",") if f.strip()))
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise click.UsageError(f"--formats {formats!r}: choose from {', '.join(FORMATS)}")
    all_hosts = [*hosts, *(dep.read_hosts_file(hosts_file) if hosts_file else [])]
    if not all_hosts:
        raise click.UsageError("give at least one --host (or --hosts-file)")
    for h in all_hosts:  # a bad --host fails before the wheel is built
        dep.parse_target(h)
    opts = _deploy_options(identity, ssh_config, accept_new_host_key, connect_timeout,
                           remote_dir, remote_python, dry_run)
    package = build_package(artifact_or_outdir, chosen, wheel=wheel, wheelhouse=wheelhouse,
                            name=(remote_dir.rstrip("/").rsplit("/", 1)[-1] if remote_dir
                                  else None))
    click.echo(f"{package.name}: {len(package.files)} files, {package.bytes / 1024:.0f} KiB "
               f"({', '.join(package.manifest['artifacts'].values())}, "
               f"{package.manifest['verify']['rows']} verification rows)", err=True)
    results = dep.deploy(all_hosts, package, opts,
                         say=lambda msg: click.echo(msg, err=True))
    failed = [r for r in results if not r.ok]
    if len(results) == 1 and failed:
        raise EdgepruneError(failed[0].error or "deploy failed")
    click.echo(dep.result_table(results))
    if failed:
        raise EdgepruneError(f"{len(failed)} of {len(results)} boards failed: "
                             + ", ".join(r.host for r in failed))


def _bench_remote(remote, artifacts, batches, warmup, runs, min_time, threads, json_path,
                  md_path, energy_profile, calibrate, say, opts):
    """``bench --remote``: deploy, run the harness on the board and here, report side by side."""
    from edgeprune import bench as benchmark
    from edgeprune.deploy.remote import bench_remote, remote_markdown, remote_summary
    from edgeprune.fileio import write_text_atomic

    if not artifacts:
        raise click.UsageError("give at least one ARTIFACT to benchmark on the board")
    results = bench_remote(remote, artifacts, opts, batches=benchmark.parse_batches(batches),
                           warmup=warmup, runs=runs, min_time=min_time, threads=threads,
                           energy_profile=energy_profile, calibrate=calibrate, say=say)
    written = []
    if json_path:
        written.append(str(write_text_atomic(json_path, json.dumps(results, indent=2))))
    if md_path:
        written.append(str(write_text_atomic(md_path, remote_markdown(results))))
    click.echo(remote_summary(results))
    if written:
        click.echo("wrote " + ", ".join(written))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
