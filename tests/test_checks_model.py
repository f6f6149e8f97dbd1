"""The model's own facts, memory before launch, and the disk, GPU and host rules that share their
estimates: one otherwise valid spec per rule that breaks only that rule, through `preflight check`.

The base spec trains Qwen2.5-0.5B (its published config.json: Qwen/Qwen2.5-0.5B on Hugging Face)
on 2 nodes x 8 GPUs with short budgets, and passes the gate at --level static and, against fake
probes of a healthy 8 x H100 node, at --level node. Each case changes the spec, the model folder
or the probes so that exactly one rule breaks, and the gate must be shut by that check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fakes import GB, H100_BYTES, FakeGpuProbe, FakeSystemProbe, gpu_probes, h100_node

from preflight.cli import main
from preflight.modelinfo import parameter_count, read_model_folder
from preflight.probes import DiskUsage, GpuInfo, GpuInventory, Probes
from preflight.registry import REGISTRY
from preflight.spec import deep_merge

QWEN25_05B = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
              "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
              "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True,
              "max_position_embeddings": 32768, "rope_theta": 1000000.0, "torch_dtype": "bfloat16"}
QWEN25_05B_PARAMS_B = 0.494  # 494,032,768 counted; the model card says 0.49B
# A small Qwen3-MoE-shaped model (not a published one): 16 experts, 4 per token.
SMALL_MOE = {"model_type": "qwen3_moe", "hidden_size": 1024, "intermediate_size": 2048, "num_hidden_layers": 8,
             "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 64, "vocab_size": 32000,
             "tie_word_embeddings": False, "num_experts": 16, "num_experts_per_tok": 4,
             "moe_intermediate_size": 512, "max_position_embeddings": 32768}
TEMPLATE = {"chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"}

BASE: dict[str, Any] = {
    "run": {"name": "m"},
    "model": {"params_b": QWEN25_05B_PARAMS_B},
    "hardware": {"nodes": 2},
    "distributed": {"ray_address": "auto"},  # two nodes join the cluster this machine is in
    "training": {"batch_size": 512, "group_size": 16, "max_steps": 2000, "max_prompt_tokens": 128,
                 "max_response_tokens": 256},
    "storage": {"checkpoint_dir": "ckpt", "min_free_gb": 1},
    "stack": {"packages": {"wandb": None}},
    "monitoring": {"sinks": ["jsonl"]},
    # RL samples near 1.0; the reference's 0.01-0.1 tuning range would warn on every spec here
    "checklist": {"severity": {"config.temperature.range": "off"}},
}


def model_folder(root: Path, config: dict | None = None, text: str | None = None, template: bool = True,
                 tokenizer: bool = True, name: str = "model") -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(text if text is not None else json.dumps(config or QWEN25_05B),
                                        encoding="utf-8")
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}", encoding="utf-8")
        (folder / "tokenizer_config.json").write_text(json.dumps(TEMPLATE if template else {}), encoding="utf-8")
    return folder


def write_spec_for(root: Path, folder: Path | str, edits: dict | None = None) -> Path:
    spec = deep_merge(BASE, {"model": {"name_or_path": str(folder)}})
    spec = deep_merge(spec, edits or {})
    path = root / "run.yaml"
    path.write_text(json.dumps(spec, indent=1), encoding="utf-8")  # JSON is YAML
    return path


def gate(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, spec: Path, level: str = "static",
         probes: Probes | None = None, fail_on: str = "fail") -> tuple[int, dict[str, dict]]:
    monkeypatch.setattr("preflight.service.report.Probes", lambda: probes or gpu_probes())
    code = main(["check", str(spec), "--level", level, "--no-attest", "--format", "json", "--fail-on", fail_on])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    report = json.loads(out)
    return code, {r["id"]: r for r in report["results"]}


@dataclass
class PathDisk(FakeSystemProbe):
    """A fake system whose disk usage differs by path prefix (Ray's temp dir vs the checkpoints)."""

    usage: dict[str, DiskUsage] = field(default_factory=dict)

    def disk_usage(self, path: Path) -> DiskUsage:
        for prefix, usage in self.usage.items():
            if str(path).startswith(prefix):
                return usage
        return super().disk_usage(path)


def gpus(name: str = "NVIDIA H100 80GB HBM3", memory: int = H100_BYTES, ecc: int = 0) -> GpuInventory:
    return GpuInventory("550.54.15", "12.4", [GpuInfo(i, name, memory, f"GPU-{i}", ecc) for i in range(8)])


def moe_spec_edits(config: dict) -> dict:
    count = parameter_count(_arch(config))
    return {"model": {"params_b": round(count.total / 1e9, 3), "active_params_b": round(count.active / 1e9, 3),
                      "architecture": "moe", "experts": config["num_experts"]}}


def _arch(config: dict):  # type: ignore[no-untyped-def]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config), encoding="utf-8")
        return read_model_folder(Path(tmp)).arch


# --- the base passes --------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["static", "node"])
def test_the_base_spec_passes_the_gate(tmp_path, capsys, monkeypatch, level):
    spec = write_spec_for(tmp_path, model_folder(tmp_path))
    code, results = gate(capsys, monkeypatch, spec, level, fail_on="warn")
    bad = {k: (r["status"], r["found"]) for k, r in results.items() if r["status"] in ("fail", "warn", "error")}
    assert code == 0 and bad == {}, bad
    for cid in ("config.model.files", "config.model.context", "config.model.params", "hw.memory.gpu"):
        assert results[cid]["status"] == "pass", cid
    assert "494,032,768" in f"{results['config.model.params']['evidence']['counted_total']:,}"
    moe = write_spec_for(tmp_path, model_folder(tmp_path, SMALL_MOE, name="moe"), moe_spec_edits(SMALL_MOE))
    code, results = gate(capsys, monkeypatch, moe, level, fail_on="warn")
    assert code == 0, {k: r["found"] for k, r in results.items() if r["status"] != "pass" and r["status"] != "skip"}


# --- one case per rule ------------------------------------------------------------------------------


@dataclass
class Case:
    check: str
    field: str  # the rule's field (the rule this case breaks)
    spec: dict = field(default_factory=dict)  # edits to the base spec
    folder: dict = field(default_factory=dict)  # model_folder arguments
    level: str = "static"
    probes: dict = field(default_factory=dict)  # gpu_probes arguments
    status: str = "fail"  # a warn is checked with --fail-on warn
    says: str = ""  # in found or remediation
    moe: bool = False


# the built-in runner has no tensor/sequence parallelism or CPU offload (config.unused warns that they
# are ignored): the rules about those layouts are shown on a spec that silences that warning, and
# the offload rule on a run TRL launches, which offloads
NO_UNUSED = {"checklist": {"severity": {"config.unused": "off"}}}
TRL_RUN = {"trainer": {"framework": "trl", "config": {"per_device_train_batch_size": 4, "num_generations": 8,
                                                      "gradient_accumulation_steps": 1},
                       "launcher": {"num_processes": 16}}}

CASES: dict[str, Case] = {
    "config.json is not JSON": Case("config.model.files", "model.name_or_path", folder={"text": "{\"hidden_size\": 8"},
                                    says="config.json: config.json is not valid JSON"),
    "no tokenizer files": Case("config.model.files", "model.name_or_path", folder={"tokenizer": False},
                               says="no tokenizer files"),
    "context too short": Case("config.model.context", "training.max_prompt_tokens",
                              folder={"config": {**QWEN25_05B, "max_position_embeddings": 256}},
                              says="lower training.max_response_tokens to at most 128"),
    "tp splits no heads": Case("config.model.heads", "distributed.tensor_parallel_size",
                               spec={"distributed": {"tensor_parallel_size": 4}, **NO_UNUSED}, says="14 attention heads"),
    "sp splits no heads": Case("config.model.heads", "distributed.sequence_parallel_size",
                               spec={"distributed": {"sequence_parallel_size": 4}, **NO_UNUSED}, says="14 attention heads"),
    "tp does not divide the GPUs": Case("config.parallel", "distributed.tensor_parallel_size",
                                        spec={"distributed": {"tensor_parallel_size": 14}, **NO_UNUSED},
                                        says="does not divide 16"),
    "tp spans nodes": Case("config.parallel", "distributed.tensor_parallel_size",
                           spec={"distributed": {"tensor_parallel_size": 16}, **NO_UNUSED}, status="warn",
                           folder={"config": {**QWEN25_05B, "num_attention_heads": 16}}, says="spans nodes"),
    "sp does not divide the GPUs": Case("config.parallel", "distributed.sequence_parallel_size",
                                        spec={"distributed": {"sequence_parallel_size": 14}, **NO_UNUSED},
                                        says="does not divide 16"),
    "params_b 20 % off": Case("config.model.params", "model.params_b", spec={"model": {"params_b": 0.6}},
                              status="warn", says="set model.params_b: 0.494"),
    "params_b 10x off": Case("config.model.params", "model.params_b", spec={"model": {"params_b": 5}},
                             says="model.params_b 5 vs 0.494B counted"),
    "active_params_b 10x off": Case("config.model.params", "model.active_params_b", moe=True,
                                    spec={"model": {"active_params_b": 4}}, says="model.active_params_b 4 vs"),
    "a MoE called dense": Case("config.model.params", "model.architecture", moe=True, status="warn",
                               spec={"model": {"architecture": "dense"}}, says="declares 16 experts"),
    "experts miscounted": Case("config.model.params", "model.experts", moe=True, status="warn",
                               spec={"model": {"experts": 8}}, says="model.experts 8 vs 16"),
    "chat prompts, no template": Case("config.model.chat_template", "data.format", spec={"data": {"format": "verl"}},
                                      folder={"template": False}, says="no chat template"),
    "chat domain, no template": Case("config.model.chat_template", "run.domain",
                                     spec={"run": {"domain": "chat", "reward": "json:loads"},
                                           "data": {"train": "t.jsonl", "val": "v.jsonl", "test": "s.jsonl"}},
                                     folder={"template": False}, says="no chat template"),
    # each GPU trains its whole share of 32 sequences at once: the remedy names the micro-batch that fits
    "memory over the GPU": Case("hw.memory.gpu", "hardware.min_vram_gb",
                                spec={"training": {"max_response_tokens": 4096}},
                                says="set training.micro_batch_size: 4 (each GPU then trains 4 of its 32 sequences"),
    "a micro-batch too large": Case("hw.memory.gpu", "training.micro_batch_size",
                                    spec={"training": {"max_response_tokens": 4096, "micro_batch_size": 16}},
                                    says="set training.micro_batch_size: 4"),
    # 28k-token sequences: even one per pass keeps too many activations without recomputation
    "long sequences without recomputation": Case("hw.memory.gpu", "training.gradient_checkpointing",
                                                 spec={"training": {"max_response_tokens": 28000,
                                                                    "micro_batch_size": 1}},
                                                 says="training.micro_batch_size: 1 and "
                                                      "training.gradient_checkpointing: true"),
    # all 14 heads keep K and V (no grouped-query attention): 32 completions of 28k tokens at once
    # hold ~77 GB of KV cache; one group of 16 at a time fits
    "a generation chunk too large": Case("hw.memory.gpu", "training.generation_batch_size",
                                         folder={"config": {**QWEN25_05B, "num_key_value_heads": 14}},
                                         spec={"training": {"max_response_tokens": 28000, "micro_batch_size": 1,
                                                            "gradient_checkpointing": True}},
                                         says="set training.generation_batch_size: 16"),
    # the base needs about 32.8 GB per GPU (asserted below): 34 GB GPUs leave under 10 % headroom
    "memory headroom under 10 %": Case("hw.memory.gpu", "hardware.min_vram_gb", status="warn",
                                       spec={"hardware": {"min_vram_gb": 34}}, says="less than 10 % headroom"),
    "offload over the host RAM": Case("hw.memory.host", "hardware.min_host_memory_gb",
                                      spec={"distributed": {"cpu_offload": True}, "hardware": {"min_host_memory_gb": 4},
                                            **TRL_RUN},
                                      says="offloaded_states"),
    "host RAM measured too small": Case("hw.memory.host", "hardware.min_host_memory_gb", level="node",
                                        spec={"hardware": {"min_host_memory_gb": 1}},
                                        probes={"system": FakeSystemProbe(memory_bytes=2 * GB)},
                                        says="checkpoint_staging"),
    "disk too small for the checkpoints": Case("storage.free_space", "checkpoints.keep_last", level="node",
                                               probes={"system": FakeSystemProbe(free_bytes=10 * GB)},
                                               says="keep fewer checkpoints"),
    "checkpoint dir not writable": Case("storage.checkpoint_dir", "storage.checkpoint_dir", level="node",
                                        probes={"system": FakeSystemProbe(unwritable={"ckpt"})}),
    "Ray's temp dir 96 % full": Case("host.ray_tmp", "distributed.ray_address", level="node", probes={
        "system": PathDisk(usage={"/ray-volume": DiskUsage(100 * GB, 4 * GB)}),
        "env": {"TMPDIR": "/ray-volume"}}, says="96% used"),
    "too few GPUs": Case("hw.gpu.count", "hardware.gpus_per_node", level="node",
                         probes={"gpu": FakeGpuProbe(h100_node(4))}, says="4 GPUs"),
    "a GPU model not allowed": Case("hw.gpu.model", "hardware.gpu_models", level="node",
                                    probes={"gpu": FakeGpuProbe(gpus("NVIDIA L40S"))}, says="L40S"),
    "GPUs with too little memory": Case("hw.gpu.vram", "hardware.min_vram_gb", level="node",
                                        probes={"gpu": FakeGpuProbe(gpus("NVIDIA H100 PCIe", 42_400_000_000))},
                                        says="42.4 GB"),
    "driver too old": Case("hw.gpu.driver", "hardware.min_driver_version", level="node",
                           spec={"hardware": {"min_driver_version": "560.28"}}, says="upgrade the NVIDIA driver"),
    "uncorrected ECC errors": Case("hw.gpu.ecc", "hardware.max_uncorrected_ecc_errors", level="node",
                                   probes={"gpu": FakeGpuProbe(gpus(ecc=3))}, says="uncorrected ECC errors"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_rule_blocks_a_spec_that_breaks_only_it(name, tmp_path, capsys, monkeypatch):
    case = CASES[name]
    config = SMALL_MOE if case.moe else case.folder.get("config")
    folder = model_folder(tmp_path, config, **{k: v for k, v in case.folder.items() if k != "config"})
    edits = deep_merge(moe_spec_edits(SMALL_MOE), case.spec) if case.moe else case.spec
    spec = write_spec_for(tmp_path, folder, edits)
    probes = gpu_probes(**dict(case.probes))
    code, results = gate(capsys, monkeypatch, spec, case.level, probes, "warn" if case.status == "warn" else "fail")
    assert code == 1
    r = results[case.check]
    assert r["status"] == case.status, (r["found"], r["remediation"])
    shut = {k for k, x in results.items() if x["status"] in ("fail", "error", "warn")}
    assert shut == {case.check}, {k: results[k]["found"] for k in shut}
    assert case.says in r["found"] + " " + r["remediation"] + " " + json.dumps(r["evidence"])
    assert r["remediation"].strip() and r["expected"].strip()


def test_every_rule_of_these_checks_has_a_case():
    mine = ("config.model.", "config.parallel", "hw.memory.", "hw.gpu.", "storage.checkpoint_dir",
            "storage.free_space", "host.ray_tmp")
    theirs = ("hw.gpu.copy_bandwidth", "hw.gpu.matmul")  # active measurements: tests/test_rules.py
    rules = {(cid, r.field) for cid, d in REGISTRY.items()
             if cid.startswith(mine) and cid not in theirs for r in d.rules}
    covered = {(c.check, c.field) for c in CASES.values()}
    assert rules - covered == set()


def test_the_headroom_case_sits_where_it_says(tmp_path, capsys, monkeypatch):
    spec = write_spec_for(tmp_path, model_folder(tmp_path))
    _, results = gate(capsys, monkeypatch, spec)
    estimate = float(results["hw.memory.gpu"]["evidence"]["estimate"].split()[0])
    assert 34 * 0.9 < estimate < 34


# --- the facts, the offline cases and the shared estimates ---------------------------------------------


def test_a_hub_id_is_not_checkable_offline_and_memory_assumes_a_shape(tmp_path, capsys, monkeypatch):
    spec = write_spec_for(tmp_path, "Qwen/Qwen2.5-0.5B")
    code, results = gate(capsys, monkeypatch, spec)
    assert code == 0
    for cid in ("config.model.files", "config.model.context", "config.model.params"):
        assert results[cid]["status"] == "skip"
        assert "hub id" in results[cid]["found"] and "not checkable offline" in results[cid]["found"]
    model = results["hw.memory.gpu"]["evidence"]["model"]
    assert "assumed Qwen2.5-0.5B's layer shape" in model
    missing = write_spec_for(tmp_path, tmp_path / "nowhere")
    _, results = gate(capsys, monkeypatch, missing)
    assert "is not on this machine" in results["config.model.context"]["found"]


def test_the_tiny_model_has_known_heads_and_skips_what_it_lacks(tmp_path, capsys, monkeypatch):
    spec = write_spec_for(tmp_path, "tiny", {"model": {"params_b": 0.001},
                                             "distributed": {"tensor_parallel_size": 8}})
    code, results = gate(capsys, monkeypatch, spec)
    assert results["config.model.heads"]["status"] == "fail"  # 4 heads over 8
    assert "4 attention heads" in results["config.model.heads"]["found"]
    assert results["config.model.params"]["status"] == "skip"
    assert results["config.model.context"]["status"] == "skip"


def test_a_broken_config_is_a_failure_naming_the_file_and_the_fix_not_a_traceback(tmp_path, capsys, monkeypatch):
    folder = model_folder(tmp_path, text='{"hidden_size": 896,')
    code, results = gate(capsys, monkeypatch, write_spec_for(tmp_path, folder))
    r = results["config.model.files"]
    assert code == 1 and r["status"] == "fail"
    assert str(folder / "config.json") in r["found"] and "line 1" in r["found"]
    assert "restore config.json" in r["remediation"]
    for cid in ("config.model.context", "config.model.params"):
        assert results[cid]["status"] == "skip" and "config.model.files" in results[cid]["found"]


def test_a_file_or_an_empty_folder_is_not_a_model(tmp_path, capsys, monkeypatch):
    config = model_folder(tmp_path) / "config.json"
    _, results = gate(capsys, monkeypatch, write_spec_for(tmp_path, config))
    assert results["config.model.files"]["status"] == "fail"
    assert "is a file, not a model folder" in results["config.model.files"]["found"]
    empty = tmp_path / "empty"
    empty.mkdir()
    _, results = gate(capsys, monkeypatch, write_spec_for(tmp_path, empty))
    assert results["config.model.files"]["status"] == "fail"
    assert "not a saved Hugging Face model" in results["config.model.files"]["found"]


def test_rope_scaling_extends_the_context(tmp_path, capsys, monkeypatch):
    yarn = {**QWEN25_05B, "max_position_embeddings": 256,
            "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256}}
    spec = write_spec_for(tmp_path, model_folder(tmp_path, yarn))
    _, results = gate(capsys, monkeypatch, spec)
    r = results["config.model.context"]
    assert r["status"] == "pass" and "yarn rope scaling factor 4" in r["expected"]


def test_plain_and_undecided_prompts_need_no_template(tmp_path, capsys, monkeypatch):
    spec = write_spec_for(tmp_path, model_folder(tmp_path, template=False))
    _, results = gate(capsys, monkeypatch, spec)
    assert results["config.model.chat_template"]["status"] == "skip"
    chat = write_spec_for(tmp_path, model_folder(tmp_path, name="chat"), {"run": {"domain": "chat"}})
    _, results = gate(capsys, monkeypatch, chat)
    assert results["config.model.chat_template"]["status"] == "pass"
    assert "tokenizer_config.json chat_template" in results["config.model.chat_template"]["found"]


def test_node_level_compares_with_the_measured_gpu_memory(tmp_path, capsys, monkeypatch):
    # The spec promises only 20 GB GPUs: too little at --level static; the H100s measured at --level
    # node have 85.5 GB, and the estimate is compared with those.
    spec = write_spec_for(tmp_path, model_folder(tmp_path), {"hardware": {"min_vram_gb": 20}})
    _, static = gate(capsys, monkeypatch, spec)
    assert static["hw.memory.gpu"]["status"] == "fail"
    assert "hardware.min_vram_gb 20 GB" in static["hw.memory.gpu"]["expected"]
    _, node = gate(capsys, monkeypatch, spec, "node")
    assert node["hw.memory.gpu"]["status"] == "pass"
    assert "85.5 GB" in node["hw.memory.gpu"]["expected"] and "NVML" in node["hw.memory.gpu"]["expected"]


def test_disk_and_host_share_the_checkpoint_estimate_counted_from_the_config(tmp_path, capsys, monkeypatch):
    # model.params_b says 0.6B (a warning); the checkpoint is sized from the 0.494B counted.
    spec = write_spec_for(tmp_path, model_folder(tmp_path), {"model": {"params_b": 0.6}})
    _, results = gate(capsys, monkeypatch, spec, "node")
    disk = results["storage.free_space"]["evidence"]["checkpoint_size"]
    host = results["hw.memory.host"]["evidence"]["checkpoint_staging"]
    assert disk.startswith("5.9 GB (0.494B params (config.json in")
    assert "one checkpoint of 5.9 GB (0.494B params (config.json in" in host


def test_explain_shows_the_breakdown(capsys):
    assert main(["explain", "hw.memory.gpu"]) == 0
    text = capsys.readouterr().out
    for part in ("model states: 18 B x P / world", "KV cache: 2 x layers x ceil(KV heads / tp)",
                 "activations:", "logits: 12 B x vocabulary", "with training.gradient_checkpointing",
                 "tokens x (layers x h + (4h + 2 q_dim + 2 kv_dim + 4 i))", "training.generation_batch_size",
                 "Peak = states", "remedy names the largest training.micro_batch_size"):
        assert part in " ".join(text.split()), part
