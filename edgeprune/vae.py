"""The public VAE API (issue 16): ``from edgeprune.vae import VAE, train_vae``.

The model lives in :mod:`edgeprune.vae_model`, its ELBO training in :mod:`edgeprune.vae_training`.
"""

from edgeprune.vae_model import LIKELIHOODS, VAE, VAEError, default_output_activation
from edgeprune.vae_training import (
                                    build_vae,
                                    elbo_terms,
                                    fit_vae,
                                    kl_divergence,
                                    kl_weight,
                                    reconstruction_nll,
                                    train_vae,
)

__all__ = ["LIKELIHOODS", "VAE", "VAEError", "build_vae", "default_output_activation",
           "elbo_terms", "fit_vae", "kl_divergence", "kl_weight", "reconstruction_nll",
           "train_vae"]
