"""Your own model and documents: any causal LM (tiny GPT-2, Llama and GPT-NeoX folders written
with save_pretrained), any document format, every option, and every bad input refused with a
message naming the parameter before any compute."""

from __future__ import annotations

import json
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_VOCAB, need_mirror, save_tiny, tiny_cyclic, tiny_lm, word_tokenizer

import cldyn_lib as cl
from cldyn_lib.cyclic import engine
from cldyn_lib.models import causal_lm as clm

ARCHS = ("gpt2", "llama", "neox")


def own_cfg(own, arch="gpt2", **kw):
    fields = dict(causal_lm=own[arch], docs=own["jsonl"], n_docs=4, context=16, steps=2,
                  epochs=2, optimizer="adam", lr=3e-3, require_full=False, device="cpu")  # fmt: skip
    return cl.CyclicConfig(**{**fields, **kw})


def direct_losses(folder, texts, C):
    """Row 0 by hand: the saved model in eval mode, mean next-token loss over real tokens."""
    from transformers import AutoModelForCausalLM

    tok = word_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    out = []
    for t in texts:
        ids = torch.tensor([tok(t)["input_ids"][:C]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1]
        out.append(F.cross_entropy(logits, ids[0, 1:]).item())
    return np.array(out)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_runs_from_its_folder_bitwise_repeatable(own, arch):
    cfg = own_cfg(own, arch, doc_selection="first")
    a, b = cl.run_cyclic(cfg, progress=False), cl.run_cyclic(cfg, progress=False)
    assert a.losses.shape == (9, 4) and np.isfinite(a.losses).all()
    assert np.array_equal(a.losses, b.losses) and np.array_equal(a.train_losses, b.train_losses)
    # row 0 is the model's own loss on the first 4 documents (first C tokens, padding left out)
    np.testing.assert_allclose(a.losses[0], direct_losses(own[arch], own["texts"][:4], 16),
                               rtol=1e-5)  # fmt: skip
    assert a.doc_ids == ["d0", "d1", "d2", "d3"]
    assert a.losses[-1].mean() < a.losses[0].mean()  # it learns its documents
    run = a.provenance["run"]
    assert run["vocab_size"] == TINY_VOCAB and run["causal_lm"]["depth"] == 2
    assert a.provenance["data"][0]["sha256"]  # the documents' file is in the provenance


def test_vocabularies_full_tokenizer_and_docs(own):
    sizes = {}
    for vocab in ("full", "tokenizer", "docs"):
        state = cl.setup_cyclic(own_cfg(own, "llama", vocab=vocab))
        sizes[vocab] = state.vocab.size
        assert state.model.get_input_embeddings().weight.shape[0] == state.vocab.size
        assert state.model.get_output_embeddings().weight.shape[0] == state.vocab.size
    assert sizes["full"] == TINY_VOCAB and sizes["tokenizer"] == len(word_tokenizer()) == 29
    assert sizes["docs"] < 29
    # the tokenizer's softmax is the full one restricted to its 29 ids
    full = cl.setup_cyclic(own_cfg(own, "llama", doc_selection="first"))
    tok = cl.setup_cyclic(own_cfg(own, "llama", doc_selection="first", vocab="tokenizer"))
    ids = full.tokens[:1, :16]
    with torch.no_grad():
        lf = full.model(input_ids=ids).logits[..., :29]
        lt = tok.model(input_ids=ids).logits
    torch.testing.assert_close(lt, lf)


@pytest.mark.parametrize("arch", ARCHS)
def test_frozen_blocks_freeze_the_embedding_and_the_first_blocks(own, arch):
    cfg = own_cfg(own, arch, frozen_blocks=1, lr=1e-2)
    state = cl.setup_cyclic(cfg)
    before = {n: p.detach().clone() for n, p in state.model.named_parameters()}
    cl.run_cyclic(cfg, state=state, progress=False)
    blocks = clm.transformer_blocks(state.model)
    frozen_ids = {id(p) for m in clm.embedding_modules(state.model) for p in m.parameters()}
    frozen_ids |= {id(p) for p in blocks[0].parameters()}
    for name, p in state.model.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved != (id(p) in frozen_ids), name
    if arch == "gpt2":  # tied: the output layer is the frozen embedding; wpe is frozen too
        assert clm.is_tied(state.model) and not state.model.lm_head.weight.requires_grad
        assert not state.model.transformer.wpe.weight.requires_grad
    else:
        assert state.model.get_output_embeddings().weight.requires_grad
    assert state.info["frozen_params"] == sum(
        p.numel() for p in state.model.parameters() if not p.requires_grad
    )


FAMILIES = {
    "gpt2": dict(n_embd=16, n_layer=2, n_head=2), "llama": {}, "qwen2": {}, "mistral": {},
    "gpt_neox": {}, "opt": dict(ffn_dim=32, word_embed_proj_dim=16), "falcon": {},
    "bloom": dict(n_layer=2, n_head=2), "gptj": dict(n_embd=16, n_layer=2, n_head=2, rotary_dim=4),
    "phi": {}, "mpt": dict(d_model=16, n_heads=2, n_layers=2), "gemma": dict(head_dim=8),
}  # fmt: skip


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_transformer_blocks_are_found_for_each_family(family):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(family, vocab_size=64, **FAMILIES[family])
    for k, v in dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=1, intermediate_size=32).items():  # fmt: skip
        if k in cfg.to_dict() or hasattr(cfg, k):
            setattr(cfg, k, v)
    model = AutoModelForCausalLM.from_config(cfg)
    blocks = clm.transformer_blocks(model)
    assert len(blocks) == 2 and blocks is not model.get_input_embeddings()
    n = clm.freeze_blocks_(model, 1)
    assert n > sum(p.numel() for p in blocks[0].parameters())  # the embedding too
    assert all(p.requires_grad for p in blocks[1].parameters())


def test_blocks_not_found_is_refused_by_name():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stack = torch.nn.ModuleList([torch.nn.Linear(2, 2)])

    with pytest.raises(cl.ConfigError, match="frozen_blocks needs the transformer blocks"):
        clm.freeze_blocks_(Odd(), 1)
    assert clm.freeze_blocks_(Odd(), 0) == 0


def test_evaluation_in_eval_mode_training_in_train_mode(own, tmp_path):
    """GPT-2 has dropout 0.1: evaluation without it (the same numbers every time, as the
    model's own eval()), training with it (other step losses than the same weights without)."""
    state = cl.setup_cyclic(own_cfg(own, "gpt2"))
    assert state.model.training
    a, b = engine.evaluate_documents(state), engine.evaluate_documents(state)
    assert torch.equal(a, b) and state.model.training  # put back into train mode
    state.model.train()
    with torch.no_grad():  # what the same forward gives with dropout on
        noisy = state.model(input_ids=state.tokens[:, :16]).logits
        state.model.eval()
        clean = state.model(input_ids=state.tokens[:, :16]).logits
    assert not torch.equal(noisy, clean)
    no_dropout = save_tiny(tmp_path / "nodrop", "gpt2", resid_pdrop=0.0, embd_pdrop=0.0,
                           attn_pdrop=0.0)  # fmt: skip
    with_d = cl.run_cyclic(own_cfg(own, "gpt2"), progress=False)
    without = cl.run_cyclic(own_cfg(own, "gpt2", causal_lm=str(no_dropout)), progress=False)
    assert np.array_equal(with_d.losses[0], without.losses[0])  # same weights, eval mode
    assert not np.array_equal(with_d.train_losses[0], without.train_losses[0])


def test_masking_window_shift_and_sgd_run_on_any_model(own):
    plain = cl.run_cyclic(own_cfg(own, "llama", context=8), progress=False)
    varied = cl.run_cyclic(own_cfg(own, "llama", context=8, window="centre", shift=2,
                                   mask_prob=0.3), progress=False)  # fmt: skip
    sgd = cl.run_cyclic(own_cfg(own, "llama", context=8, optimizer="sgd", lr=0.5), progress=False)
    for r in (varied, sgd):
        assert np.isfinite(r.losses).all() and not np.array_equal(r.losses, plain.losses)
    assert varied.provenance["config"]["shift"] == 2


def test_random_weights_build_the_architecture_afresh_seeded(own, tmp_path):
    config_only = tmp_path / "config-only"
    tiny_lm("llama").config.save_pretrained(config_only)
    word_tokenizer().save_pretrained(config_only)
    a = cl.run_cyclic(own_cfg(own, causal_lm=str(config_only), weights="random"), progress=False)
    b = cl.run_cyclic(own_cfg(own, causal_lm=str(config_only), weights="random"), progress=False)
    c = cl.run_cyclic(own_cfg(own, causal_lm=str(config_only), weights="random", seed=1),
                      progress=False)  # fmt: skip
    assert np.array_equal(a.losses, b.losses) and not np.array_equal(a.losses, c.losses)


def test_lora_trains_adapters_only(own):
    pytest.importorskip("peft")
    cfg = own_cfg(own, "llama", lora_rank=2, lr=1e-2)
    state = cl.setup_cyclic(cfg)
    base = {n: p.detach().clone() for n, p in state.model.named_parameters() if "lora_" not in n}
    res = cl.run_cyclic(cfg, state=state, progress=False)
    trained = [n for n, p in state.model.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n for n in trained)
    for n, p in state.model.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), n
    assert res.losses[-1].mean() < res.losses[0].mean()
    assert res.provenance["run"]["n_trainable"] < res.provenance["run"]["n_params"] / 5


def fake_datasets(monkeypatch, rows: dict):
    """A stand-in for the datasets package: load_dataset returns ``rows`` as columns."""

    class Table(dict):
        column_names = property(lambda self: list(self))

    mod = types.ModuleType("datasets")
    mod.load_dataset = lambda name, config=None, split="train": Table(rows)
    monkeypatch.setitem(sys.modules, "datasets", mod)


def test_every_document_format_gives_the_same_run(own, monkeypatch):
    fake_datasets(monkeypatch, {"text": own["texts"]})
    runs = {}
    for kind, docs in (("jsonl", own["jsonl"]), ("txt", own["txt"]), ("folder", own["folder"]),
                       ("hub", "hf:someone/notes:default:train")):  # fmt: skip
        runs[kind] = cl.run_cyclic(own_cfg(own, docs=docs, doc_selection="first"), progress=False)
    for kind, r in runs.items():
        assert np.array_equal(r.losses, runs["jsonl"].losses), kind
    assert runs["hub"].provenance["data"][0]["location"] == "hf:someone/notes/default/train"
    assert cl.load_texts(own["folder"]).ids[:2] == ["00.txt", "01.txt"]


def test_short_documents_are_padded_and_masked_or_refused(own):
    cfg = own_cfg(own, doc_selection="first", context=32)
    state = cl.setup_cyclic(cfg)
    lengths = state.lengths.numpy()
    assert (lengths < 32).any()  # some documents are shorter than C: padded with id 0
    assert (state.docs.tokens[lengths < 32, -1] == 0).all()
    with pytest.raises(cl.ConfigError, match="require_full=True asks for documents of at least 32"):
        cl.setup_cyclic(cfg.replace(require_full=True))


def test_pythia_vocab_tokenizer_is_the_tokenizers_50277_ids():
    need_mirror("tokenizers")
    state = cl.setup_cyclic(tiny_cyclic(vocab="tokenizer"))
    assert state.vocab.size == 50_277 == state.model.get_input_embeddings().weight.shape[0]
    assert cl.setup_cyclic(tiny_cyclic(vocab="full")).vocab.size == 50_304


def test_preset_knobs_are_reset_for_pretrained_weights(own):
    with pytest.warns(UserWarning, match="reset to 0 for weights='pretrained'"):
        cfg = cl.CyclicConfig.preset("ci", weights="pretrained")
    assert (cfg.width, cfg.depth, cfg.heads) == (0, 0, 0) and cfg.n_docs == 10
    with pytest.warns(UserWarning, match="a causal_lm"):
        own_ci = cl.CyclicConfig.preset("ci", causal_lm=own["gpt2"])
    assert own_ci.width == 0 and own_ci.weights == "random"
    with pytest.raises(cl.ConfigError, match="width must be 0 with weights='pretrained'"):
        with pytest.warns(UserWarning, match="depth=2, heads=4"):  # these two are reset
            cl.CyclicConfig.preset("ci", weights="pretrained", width=64)  # asked for: error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cl.CyclicConfig.preset("ci").width == 64  # random weights: nothing to reset


# ---------------------------------------------------------------- bad input, before compute


def bad_folders(own, root: Path) -> dict[str, tuple[dict, str]]:
    """name -> (config overrides, the message expected)."""
    from transformers import BertConfig, BertModel

    bert = root / "bert"
    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, vocab_size=48)).save_pretrained(bert)  # fmt: skip
    word_tokenizer().save_pretrained(bert)
    remote = save_tiny(root / "remote", "gpt2")
    raw = json.loads((remote / "config.json").read_text())
    raw["auto_map"] = {"AutoModelForCausalLM": "modeling_mine.MyLM"}
    (remote / "config.json").write_text(json.dumps(raw))
    unknown = save_tiny(root / "unknown", "gpt2")
    raw = json.loads((unknown / "config.json").read_text())
    raw["model_type"] = "my_own_lm"
    (unknown / "config.json").write_text(json.dumps(raw))
    no_eos = save_tiny(root / "no-eos", "gpt2", tokenizer=word_tokenizer(eos=False))
    no_tok = root / "no-tokenizer"
    tiny_lm("gpt2").save_pretrained(no_tok)
    no_weights = root / "no-weights"
    tiny_lm("gpt2").config.save_pretrained(no_weights)
    word_tokenizer().save_pretrained(no_weights)
    (root / "empty").mkdir()
    jsonl = root / "bad.jsonl"
    jsonl.write_text('{"text": "the cat sat"}\n{"body": "a dog ran"}\n')
    empty = root / "empty-doc.jsonl"
    empty.write_text('{"text": "the cat sat on the mat"}\n{"text": "  "}\n')
    one = root / "one-token.jsonl"
    one.write_text('{"text": "the cat sat on the mat"}\n{"text": "cat"}\n')
    few = root / "few.txt"
    few.write_text("the cat sat\na dog ran far\n")
    (root / "emptyfolder").mkdir()
    (root / "emptyfile").mkdir()
    (root / "emptyfile" / "a.txt").write_text("")
    (root / "notes.csv").write_text("text\nthe cat\n")
    big = save_tiny(root / "big-tokenizer", "llama", vocab_size=20)
    return {
        "not a causal LM": (dict(causal_lm=str(bert)), "must be a causal language model"),
        "remote code": (dict(causal_lm=str(remote)), "would need trust_remote_code"),
        "unknown model_type": (dict(causal_lm=str(unknown)), "needs trust_remote_code is refused"),
        "tokenizer without pad or eos": (dict(causal_lm=str(no_eos)), "neither a pad token"),
        "folder without tokenizer": (dict(causal_lm=str(no_tok)), "has no tokenizer"),
        "folder without weights": (dict(causal_lm=str(no_weights)), "has a config.json but no weights"),
        "folder without config": (dict(causal_lm=str(root / "empty")), "has no config.json"),
        "missing folder": (dict(causal_lm=str(root / "nowhere")), "is not a folder"),
        "C beyond the context": (dict(context=128), r"context \(C\) must be <= 64"),
        "frozen blocks beyond depth": (dict(frozen_blocks=3), r"frozen_blocks must be an integer in \[0, 2\]"),
        "missing .jsonl field": (dict(docs=str(jsonl)), "line 2 has no 'text'"),
        "empty document": (dict(docs=str(empty)), "line 2 of empty-doc.jsonl is an empty document"),
        "one-token document": (dict(docs=str(one)), "has 1 token"),
        "empty file in folder": (dict(docs=str(root / "emptyfile")), "file a.txt of emptyfile is an empty"),
        "folder without .txt": (dict(docs=str(root / "emptyfolder")), "holds no .txt files"),
        "fewer documents than T": (dict(docs=str(few)), r"n_docs \(T\) must be <= 2"),
        "docs that do not exist": (dict(docs=str(root / "nope.jsonl")), "does not exist"),
        "docs of another format": (dict(docs=str(root / "notes.csv")), "docs must be one of"),
        "tokenizer beyond the embedding": (dict(causal_lm=str(big)), "has\\s+only 20 rows"),
        "lora with frozen blocks": (dict(lora_rank=2, frozen_blocks=1), "frozen_blocks must be 0 with lora_rank"),
        "pythia knobs with a causal_lm": (dict(width=32), "width must be 0 with a causal_lm"),
        "init with a causal_lm": (dict(init="gaussian"), "init and init_dims apply"),
    }  # fmt: skip


def test_each_bad_input_is_refused_by_name_before_any_compute(own, tmp_path, monkeypatch):
    def no_compute(*a, **k):
        raise AssertionError("compute started before the bad input was refused")

    monkeypatch.setattr(engine, "train_episode", no_compute)
    monkeypatch.setattr(engine, "evaluate_documents", no_compute)
    for name, (overrides, message) in bad_folders(own, tmp_path).items():
        with pytest.raises(cl.ConfigError, match=message):
            cl.run_cyclic(own_cfg(own, **overrides), progress=False)
        print("refused:", name)


def test_hub_documents_without_the_column_or_the_package(own, monkeypatch):
    fake_datasets(monkeypatch, {"article": ["the cat sat on the mat"] * 5})
    with pytest.raises(cl.ConfigError, match=r"docs_field must name a text column.*'article'"):
        cl.load_texts("hf:cnn", "text")
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(cl.ConfigError, match="needs the datasets package"):
        cl.load_texts("hf:cnn", "text")
    with pytest.raises(cl.ConfigError, match="docs must be hf:NAME"):
        cl.load_texts("hf:", "text")


def test_batched_seeds_refuse_a_causal_lm(own):
    with pytest.raises(cl.ConfigError, match="causal_lm must be '' for run_cyclic_batched"):
        cl.run_cyclic_batched([own_cfg(own), own_cfg(own, seed=1)])
