import json

from effzoo.cli import main


def test_models_json_lists_numbers(capsys):
    assert main(["models", "efficientnet_b0", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"name": "efficientnet_b0", "family": "efficientnet", "params": 5288548, "macs": rows[0]["macs"],
                     "resolution": 224, "width": 1.0, "depth": 1.0}]
    assert abs(rows[0]["macs"] - 0.386e9) < 0.002e9


def test_models_table_and_bad_pattern(capsys):
    assert main(["models", "resnet1*", "--no-macs"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "resnet152" in out and "11.69" in out
    assert main(["models", "vgg*"]) == 2
    assert "no model matches" in capsys.readouterr().err
