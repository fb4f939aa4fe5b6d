"""Named model presets (filled by the method modules)."""
PRESETS: dict = {}


def build_preset(name: str, **kw):
    raise KeyError(name)
