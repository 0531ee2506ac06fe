"""Config validation: every mistake is one DragomanError that names the YAML path."""

import copy
from pathlib import Path

import pytest
import yaml

from dragoman.cli import main
from dragoman.config import Config, load_config, parse_config
from dragoman.errors import DragomanError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MINIMAL = {
    "data": {"src": "en", "tgt": "de", "train": "data/train"},
    "train": {"model_dir": "runs/test", "max_steps": 10},
}


def with_changes(**sections) -> dict:
    raw = copy.deepcopy(MINIMAL)
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


def problem(raw) -> str:
    with pytest.raises(DragomanError) as caught:
        parse_config(raw, "exp.yaml")
    message = str(caught.value)
    assert message.startswith("exp.yaml: ")
    return message


def test_minimal_config_gets_the_documented_defaults():
    config = parse_config(MINIMAL)
    assert config.model.share_embeddings is True  # joint vocabulary by default
    assert config.decode.beam == 1
    assert config.data.files("train") == (Path("data/train.en"), Path("data/train.de"))
    assert config.data.files("dev") is None


def test_unknown_key_names_the_yaml_path_and_lists_allowed_keys():
    message = problem(with_changes(train={"optimzer": {"name": "adam"}}))
    assert "train.optimzer: unknown key" in message
    allowed = message.split("allowed here: ", 1)[1]
    for key in ("optimizer", "batch_tokens", "max_steps", "schedule"):
        assert key in allowed


def test_unknown_nested_key_lists_that_sections_keys():
    message = problem(with_changes(train={"optimizer": {"nme": "adam"}}))
    assert "train.optimizer.nme: unknown key; allowed here: betas, eps, lr, momentum" in message


def test_unknown_key_in_an_optional_section():
    raw = with_changes(data={"joint_vocab": False, "tgt_tokenizer": {"knd": "bpe"}})
    message = problem(raw)
    assert "data.tgt_tokenizer.knd: unknown key" in message
    assert "kind" in message.split("allowed here: ", 1)[1]


def test_unknown_top_level_section():
    message = problem({**MINIMAL, "traning": {}})
    assert "traning: unknown key; allowed here: data, decode, dialogue, model, name, task, train" in message


def test_wrong_type_names_the_key_and_the_value():
    message = problem(with_changes(model={"d_model": "big"}))
    assert "model.d_model:" in message
    assert "integer" in message
    assert "'big'" in message


def test_out_of_range_value_names_the_key():
    message = problem(with_changes(model={"dropout": 1.5}))
    assert "model.dropout:" in message
    assert "1.5" in message


def test_missing_required_key():
    raw = copy.deepcopy(MINIMAL)
    del raw["data"]["tgt"]
    assert "data.tgt: required key is missing" in problem(raw)


def test_heads_must_divide_d_model():
    message = problem(with_changes(model={"d_model": 30, "heads": 4}))
    assert "model.heads (4) must divide model.d_model (30)" in message


def test_n_best_cannot_exceed_beam():
    message = problem(with_changes(decode={"beam": 2, "n_best": 3}))
    assert "decode.n_best (3) cannot exceed decode.beam (2)" in message


def test_shared_embeddings_need_a_joint_vocabulary():
    message = problem(with_changes(data={"joint_vocab": False}, model={"share_embeddings": True}))
    assert "model.share_embeddings needs data.joint_vocab: true" in message


def test_separate_vocabularies_default_to_separate_embeddings():
    config = parse_config(with_changes(data={"joint_vocab": False}))
    assert config.model.share_embeddings is False


def test_training_needs_an_end():
    raw = copy.deepcopy(MINIMAL)
    del raw["train"]["max_steps"]
    message = problem(raw)
    assert "train.max_steps, train.max_epochs, train.max_minutes" in message


def test_max_len_must_fit_the_positions():
    message = problem(with_changes(data={"max_len": 100}, model={"max_positions": 64}))
    assert "data.max_len + 2 must fit model.max_positions (64)" in message


def test_every_problem_is_reported_at_once():
    message = problem(with_changes(model={"heads": "x"}, decode={"beam": 0}))
    assert "model.heads:" in message
    assert "decode.beam:" in message


def test_not_a_mapping():
    message = problem(["data", "train"])
    assert "must be a YAML mapping" in message


def test_yaml_syntax_error_gives_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(
        "data:\n  src: en\n  tgt: de\ntrain:\n  model_dir: [runs\n  max_steps: 3\n",
        encoding="utf-8",
    )
    with pytest.raises(DragomanError) as caught:
        load_config(path)
    # the "[" opened on line 5 is still open when PyYAML meets "max_steps:" on line 6
    assert caught.value.line == 6
    assert str(caught.value).startswith(f"{path}:6: not valid YAML: expected ',' or ']'")


def test_yaml_bad_indentation_points_at_its_line(tmp_path):
    path = tmp_path / "indent.yaml"
    path.write_text("data:\n  src: en\n tgt: de\n", encoding="utf-8")
    with pytest.raises(DragomanError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:3: not valid YAML")


def test_missing_config_file(tmp_path):
    with pytest.raises(DragomanError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: config file not found"


def test_config_errors_through_the_cli_are_one_line(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(with_changes(train={"optimzer": {}})), encoding="utf-8")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"dragoman: error: {path}: invalid config: train.optimzer: unknown key")
    assert "Traceback" not in err


def test_missing_config_through_the_cli(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"dragoman: error: {tmp_path / 'nope.yaml'}: config file not found\n"


def test_dumped_config_loads_back(tmp_path):
    from dragoman.config import dump_config

    config = parse_config(with_changes(model={"d_model": 64, "heads": 8}))
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config), encoding="utf-8")
    assert load_config(path) == config


SHIPPED = sorted(CONFIGS.glob("**/*.yaml")) + sorted(CONFIGS.glob("**/*.yml"))


@pytest.mark.skipif(not SHIPPED, reason="configs/ has no YAML files yet")
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_configs_load_and_validate(path):
    config = load_config(path)
    assert isinstance(config, Config)
