"""dgss: domain-generalized semantic segmentation on frozen vision foundation models."""

from .version import __version__

__all__ = ["__version__", "load_model"]


def load_model(spec, *, weights=None, random_weights=False, device="cpu", allow_hash_mismatch=False):
    """A trained dgss model, ready for inference, from a checkpoint file, an exported model folder or
    ``"hf-hub:org/name[@revision]"`` (see :func:`dgss.hub.resolve.load_model`). Frozen encoders come
    from ``weights={"encoder": FILE, "depth_encoder": FILE, "clip": FILE}`` (never bundled)."""
    from .hub.resolve import load_model as _load

    return _load(
        spec, weights=weights, random_weights=random_weights, device=device, allow_hash_mismatch=allow_hash_mismatch
    )
