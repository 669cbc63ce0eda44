#!/usr/bin/env python3
"""Read a vaelab sweep with TensorBoard's own code and print what TensorBoard sees, as JSON.

  python3 scripts/check_tensorboard.py runs/<experiment>/<sweep-id>

Scalars and images come from EventAccumulator (as TensorBoard's scalars and images dashboards load them), the
hparams from the plugin's own metadata parsers on the summaries the HParams dashboard reads. The test suite
(tests/real_readers.rs) runs this and compares it with the sweep's status files.
"""
import json, os, sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.plugins.hparams import metadata
from google.protobuf import json_format


def load(path):
    ea = EventAccumulator(path, size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    ea.Reload()
    return ea


def plugin_content(path, tag):
    """The hparams plugin data of `tag` in run `path`, read as the TensorBoard server reads it (the plugin
    event accumulator behind its data provider)."""
    ea = plugin_event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
    ea.Reload()
    if tag not in ea.Tags().get("tensors", []):
        return None
    return ea.SummaryMetadata(tag).plugin_data.content


def main(sweep):
    out = {"trials": {}, "experiment": None}
    content = plugin_content(sweep, metadata.EXPERIMENT_TAG)
    if content is not None:
        exp = metadata.parse_experiment_plugin_data(content)
        out["experiment"] = {
            "hparams": {h.name: {"type": int(h.type), "values": [json_format.MessageToDict(v) for v in h.domain_discrete.values]} for h in exp.hparam_infos},
            "metrics": [m.name.tag for m in exp.metric_infos],
        }
    for name in sorted(os.listdir(sweep)):
        run = os.path.join(sweep, name)
        if not os.path.isdir(run) or name.startswith("."):
            continue
        ea = load(run)
        tags = ea.Tags()
        trial = {
            "scalars": {t: [[e.step, e.value] for e in ea.Scalars(t)] for t in tags["scalars"]},
            "images": {t: [[e.step, e.width, e.height] for e in ea.Images(t)] for t in tags["images"]},
        }
        c = plugin_content(run, metadata.SESSION_START_INFO_TAG)
        if c is not None:
            start = metadata.parse_session_start_info_plugin_data(c)
            trial["hparams"] = {k: json_format.MessageToDict(v) for k, v in start.hparams.items()}
            trial["group"] = start.group_name
        c = plugin_content(run, metadata.SESSION_END_INFO_TAG)
        if c is not None:
            trial["status"] = int(metadata.parse_session_end_info_plugin_data(c).status)
        out["trials"][name] = trial
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
