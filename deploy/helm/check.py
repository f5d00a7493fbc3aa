#!/usr/bin/env python3
"""Lints, renders and packages the nanovisor chart with Helm's own Go code, offline.

No helm binary is needed (nor a cluster). Two PyPI bindings of Helm's Go SDK are used,
because neither does everything:

- helm-sdkpy: `helm lint` as Helm itself runs it (the chart's own values), and `helm
  package`. It has no offline render, and its lint report loses the message texts.
- helm-python-sdk: `helm template` (Chart.render) and `helm lint --strict` with extra
  values files and a chosen Kubernetes version, with message texts.

Usage (Python >= 3.12 with both packages; tests/tests/helm_chart.rs sets up a venv):

  check.py lint CHART [--values FILE]... [--kube-version v1.30.0]
  check.py render CHART OUT_DIR [--values FILE] [--name RELEASE] [--namespace NS]
  check.py package CHART DEST_DIR

`lint` exits 1 if either linter reports an error or a warning (info is fine). `render`
writes into OUT_DIR:

  manifests.yaml    every rendered document, `---`-separated, each under a `# Source:` line
  NOTES.txt         the rendered notes
  facts.txt         every scalar of every document, one a line: `KIND/NAME: PATH = JSON`,
                    e.g. `RuntimeClass/nanovisor: overhead.podFixed.memory = "160Mi"`
                    (a key holding `.` or `/` is written ["like/this"]), so a test can
                    check values without a YAML parser
  files/CM/KEY      each ConfigMap's data, one file per key

Values files are YAML, merged in order over the chart's values.yaml, as `helm -f` does.
"""

import argparse
import asyncio
import json
import os
import sys

import yaml

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def load_values(files):
    """Merges YAML values files in order; later files win, mappings merge deeply."""

    def merge(base, over):
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    values = {}
    for path in files or []:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
        if not isinstance(doc, dict):
            sys.exit(f"{path}: values must be a YAML mapping")
        merge(values, doc)
    return values


def facts(doc):
    """Yields `KIND/NAME: PATH = JSON` for every scalar (and empty collection) in doc."""
    prefix = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"

    def key(k):
        k = str(k)
        return f'["{k}"]' if ("." in k or "/" in k) else f".{k}"

    def walk(path, value):
        if isinstance(value, dict) and value:
            for k, v in value.items():
                yield from walk(path + key(k), v)
        elif isinstance(value, list) and value:
            for i, v in enumerate(value):
                yield from walk(f"{path}[{i}]", v)
        else:
            yield f"{prefix}: {path.lstrip('.')} = {json.dumps(value)}"

    yield from walk("", doc)


def lint(args):
    import helm_python
    import helm_sdkpy

    failed = False

    # Helm's lint as `helm lint CHART` runs it. Its report keeps severities and paths
    # only (Go errors serialize to {}), so the texts come from the second linter.
    config = helm_sdkpy.Configuration(namespace="default")
    report = asyncio.run(helm_sdkpy.Lint(config).run(args.chart))
    for m in report.get("Messages") or []:
        severity = m.get("Severity", 0)
        print(f"helm-sdkpy lint: [{SEVERITY.get(severity, severity)}] {m.get('Path')}")
        failed |= severity >= 2
    if report.get("Errors"):
        print(f"helm-sdkpy lint: {len(report['Errors'])} error(s)")
        failed = True

    # `helm lint --strict --kube-version V [-f FILE]`, once with the chart's values and once
    # per values file.
    for files in [[]] + [[f] for f in args.values or []]:
        what = " ".join(["--strict"] + [f"-f {f}" for f in files])
        report = helm_python.lint(
            args.chart,
            load_values(files) or None,
            strict=True,
            kube_version=args.kube_version,
        )
        for m in report.get("messages") or []:
            severity = m.get("severity", 0)
            print(f"helm lint {what}: [{SEVERITY.get(severity, severity)}] {m.get('path')}: {m.get('error')}")
            failed |= severity >= 2
        for e in report.get("errors") or []:
            print(f"helm lint {what}: error: {e}")
            failed = True
    return 1 if failed else 0


def render(args):
    import helm_python

    values = load_values(args.values)
    try:
        with helm_python.Chart.load(args.chart) as chart:
            rendered = chart.render(
                values or None, name=args.name, namespace=args.namespace, is_install=True
            )
    except helm_python.HelmError as e:
        sys.exit(f"helm template {args.chart} failed: {e}")
    os.makedirs(args.out_dir, exist_ok=True)
    documents = []
    lines = []
    notes = ""
    for source in sorted(rendered):
        text = rendered[source]
        if source.endswith("NOTES.txt"):
            notes = text
            continue
        # A template that renders to nothing but whitespace or comments (a disabled
        # resource) is no document; anything else must parse as YAML here already.
        for doc in text.split("\n---"):
            try:
                parsed = yaml.safe_load(doc)
            except yaml.YAMLError as e:
                sys.exit(f"{source} does not render to YAML: {e}\n{doc}")
            if parsed is None:
                continue
            documents.append(f"# Source: {source}\n{doc.strip(chr(10))}\n")
            lines.extend(facts(parsed))
            if parsed.get("kind") == "ConfigMap":
                folder = os.path.join(args.out_dir, "files", parsed["metadata"]["name"])
                os.makedirs(folder, exist_ok=True)
                for name, content in (parsed.get("data") or {}).items():
                    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
                        f.write(content)
    with open(os.path.join(args.out_dir, "manifests.yaml"), "w", encoding="utf-8") as f:
        f.write("---\n".join(documents))
    with open(os.path.join(args.out_dir, "NOTES.txt"), "w", encoding="utf-8") as f:
        f.write(notes)
    with open(os.path.join(args.out_dir, "facts.txt"), "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    print(json.dumps({"documents": len(documents), "out_dir": args.out_dir}))
    return 0


def package(args):
    import helm_sdkpy

    config = helm_sdkpy.Configuration(namespace="default")
    path = asyncio.run(helm_sdkpy.Package(config).run(args.chart, dest_dir=args.dest_dir))
    print(path)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("lint")
    p.add_argument("chart")
    p.add_argument("--values", action="append")
    p.add_argument("--kube-version", default="v1.30.0")
    p.set_defaults(run=lint)

    p = sub.add_parser("render")
    p.add_argument("chart")
    p.add_argument("out_dir")
    p.add_argument("--values", action="append")
    p.add_argument("--name", default="nanovisor")
    p.add_argument("--namespace", default="nanovisor-system")
    p.set_defaults(run=render)

    p = sub.add_parser("package")
    p.add_argument("chart")
    p.add_argument("dest_dir")
    p.set_defaults(run=package)

    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
