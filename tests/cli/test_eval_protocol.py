"""`dgss eval --protocol soma`: Cityscapes and Mapillary are evaluated at 2048x1024 (SoMA's protocol), every
other dataset at its own test box; ``--resize`` wins over both."""

from __future__ import annotations

import pytest

import dgss.commands.eval as eval_cmd
from dgss.testing import tiny_segmentor


class FakeDataset:
    def __init__(self, name):
        from dgss.data.datasets import dataset_info

        self.info = dataset_info(name)
        self.domains = [name]


@pytest.mark.parametrize(
    "protocol, resize, expected",
    [
        ("dg", None, {"cityscapes": None, "mapillary": None, "bdd100k": None}),
        ("soma", None, {"cityscapes": (2048, 1024), "mapillary": (2048, 1024), "bdd100k": None}),
        ("soma", (640, 320), {"cityscapes": (640, 320), "mapillary": (640, 320), "bdd100k": (640, 320)}),
    ],
)
def test_protocol_sets_the_test_box_per_dataset(protocol, resize, expected, monkeypatch):
    seen = {}
    monkeypatch.setattr(eval_cmd.SegDataset, "from_root", staticmethod(lambda name, *a: FakeDataset(name)))

    def fake_evaluate(predict_logits, ds, *, resize=None, **kw):
        seen[ds.info.name] = None if resize is None else tuple(resize.box)

    monkeypatch.setattr(eval_cmd, "evaluate", fake_evaluate)
    model = tiny_segmentor("rein")
    data = [(n, "/nowhere") for n in expected]
    eval_cmd.evaluate_model(model, data, protocol=protocol, resize=resize, progress=False)
    assert seen == expected


def test_protocol_option_parses_and_unknown_ones_fail_in_one_line(capsys):
    from dgss.cli import build_parser, main

    args = build_parser().parse_args(["eval", "m.safetensors", "--data", "cityscapes=/d", "--protocol", "soma"])
    assert args.protocol == "soma"
    assert build_parser().parse_args(["eval", "m.safetensors", "--data", "cityscapes=/d"]).protocol == "dg"
    with pytest.raises(SystemExit) as e:
        main(["eval", "m.safetensors", "--data", "cityscapes=/d", "--protocol", "mmseg"])
    assert e.value.code == 2 and "invalid choice: 'mmseg'" in capsys.readouterr().err
