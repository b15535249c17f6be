"""``python -m fer evaluate``: a model on labelled photos of your own, or on FER2013."""

from __future__ import annotations

import json
import sys

from fer.cli import CLIError


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="accuracy on labelled photos of your own (or FER2013), with a report", description=(
        "Evaluate a model on a labelled set: a folder (or zip) of class folders of ordinary photos (happy/, "
        "sad/ ...; any size, any number of faces), a CSV of path,label, or FER2013 (zip, folder or challenge "
        "CSV; its PublicTest by default). Class names are matched with common synonyms (happiness, anger, "
        "surprised ...); classes this model lacks, such as contempt, are counted and left out. Prints the "
        "class mapping, the detection rate, accuracy and macro-F1 with 95 %% bootstrap intervals, per-class "
        "precision/recall and the confusion matrix; --report DIR also writes an HTML page with the figures, "
        "the most confident mistakes and a per-image CSV."))
    p.add_argument("source", nargs="?", help="class folders, a zip of them, a path,label CSV, or FER2013 "
                   "(default: the FER2013 copy `python -m fer data` finds)")
    p.add_argument("--mode", choices=["pipeline", "crops"], help="pipeline: detect the faces in each photo and score "
                   "the largest (what `predict` does); crops: each image is a face crop (default: crops for FER2013, "
                   "else pipeline)")
    p.add_argument("--model", help="model file (default: the bundled one)")
    p.add_argument("--tta", choices=["flip", "tencrop"], help="test-time augmentation")
    p.add_argument("--detector", default="auto", help="pipeline mode: auto, blazeface-front/back/full or haar")
    p.add_argument("--map", dest="mapping", metavar="SPEC", help="class names the synonyms do not cover: a preset "
                   "(rafdb, affectnet, fer2013: their numbered classes) or NAME=CLASS,... ('-' leaves one out)")
    p.add_argument("--split", help="FER2013: the split to evaluate (default: public_test)")
    p.add_argument("--limit", type=int, help="evaluate a random sample of this many images (seeded by --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of --limit's sample and of the bootstrap (default: 0)")
    p.add_argument("--jobs", type=int, help="threads decoding and detecting (default: one per core)")
    p.add_argument("--robustness", action="store_true", help="also measure accuracy under brightness, contrast, "
                   "blur, JPEG, rotation, shift, scale and occlusion changes of the scored face crops")
    p.add_argument("--report", metavar="DIR", help="write DIR/index.html, its figures, predictions.csv and summary.json")
    p.add_argument("--csv", metavar="FILE", help="write the per-image predictions to FILE")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of the table")
    p.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from fer.data import labelled, sources
    from fer.evaluation import evaluate
    from fer.inference import predict

    if args.limit is not None and args.limit < 1:
        raise CLIError("--limit must be at least 1")
    if args.jobs is not None and args.jobs < 1:
        raise CLIError("--jobs must be at least 1")
    lset = labelled.open_set(args.source or sources.locate(), args.mapping, args.split)  # before the model loads
    mode = args.mode or ("crops" if lset.crops else "pipeline")
    lset = lset.sample(args.limit, args.seed)
    clf = predict.load_classifier(args.model) if args.model else predict.default_classifier()
    ev = evaluate.run(lset, clf, mode=mode, tta=args.tta, detector=args.detector, jobs=args.jobs,
                    keep_crops=args.robustness)
    summary = evaluate.summarise(ev, seed=args.seed)
    table = None
    if args.robustness and summary["faces_found"]:
        from fer.evaluation import robustness

        y, _ = evaluate.scored(ev)
        table = robustness.table(clf, ev.crops, y, tta=args.tta, seed=args.seed)
    if args.json:
        out = summary | ({"robustness": robustness.summary(table)} if table is not None else {})
        print(json.dumps(out, indent=2, default=float))
    else:
        print(evaluate.text(summary))
        if table is not None:
            print("\n" + robustness.text(table))
    if args.csv:
        ev.table.to_csv(args.csv, index=False)
        print(f"per-image predictions: {args.csv}", file=sys.stderr)
    if args.report:
        from fer.reporting import evaluation_page

        page = evaluation_page.write_report(ev, summary, args.report, robustness=table)
        print(f"report: {page}", file=sys.stderr)
    return 0 if summary["faces_found"] else 1
