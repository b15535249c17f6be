"""The commands that make models: ``data``, ``train``, ``ensemble``, ``tune``, ``reproduce``, ``reports``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fer.cli import CLIError, require_checkout

# --------------------------------------------------------------------------- data


def add_data(sub) -> None:
    p = sub.add_parser("data", help="load a FER2013 source and print its audit", description=(
        "Load FER2013 (zip, folder or challenge CSV; default: $FER_DATA, then data/raw, then a "
        "Kaggle download) and print per-split class counts, black/constant images, repeats, "
        "leakage between splits and conflicting labels; with FER+ votes ($FER_VOTES, data/raw/ or "
        "../shared/data), how often FER2013's label agrees with the people's majority."))
    p.add_argument("source", nargs="?", help="zip, folder or CSV (default: located automatically)")
    p.add_argument("--votes", help="FER+ vote file: fer2013new.csv or ferplus_votes.csv (default: located automatically)")
    p.add_argument("--json", action="store_true", help="print the audit as JSON")
    p.add_argument("--no-cache", action="store_true", help="do not read or write data/processed")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images / malformed rows")
    p.set_defaults(handler=cmd_data)


def cmd_data(args) -> int:
    from fer import data
    from fer.data import audit, ferplus, sources

    source = args.source or sources.locate()
    splits = data.load(source, cache=not args.no_cache, skip_bad=args.skip_bad)
    report = audit.audit(splits)
    votes = data.votes(source, args.votes, skip_bad=args.skip_bad)
    fer_plus = ferplus.audit(splits, votes) if votes is not None else None
    if args.json:
        print(json.dumps({"source": str(source), **report, "ferplus": fer_plus}, indent=2))
        return 0
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(f"source: {source}\n")
        print(audit.audit_table(report).to_string())
    d, c = report["duplicates"], report["conflicts"]
    print(f"\nexact duplicates: {d['groups']} groups covering {d['images']} images")
    for split, n in report["leakage"].items():
        print(f"leakage: {n} {split} images also occur in train")
    print(f"conflicting labels: {c['groups']} groups of identical pixels ({c['images']} images)")
    if fer_plus is not None:
        print("\n" + "\n".join(ferplus.audit_lines(fer_plus)))
    return 0


# --------------------------------------------------------------------------- train


def _profile_args(p, training: bool = True) -> None:
    p.add_argument("--profile", default="cpu", help="params profile: smoke, cpu, full or a YAML path (default: cpu)")
    p.add_argument("--data", dest="data_source", help="FER2013 zip/folder/CSV, or 'synthetic' (default: the profile's)")
    if not training:
        return
    p.add_argument("--epochs", type=int, help="override the epochs (those of the block 'train' trains; else the profile's)")
    p.add_argument("--seed", type=int, help="override the profile's seed")


def _load_profile_and_data(args):
    from fer import config
    from fer.data import sources

    profile = config.load_profile(args.profile)
    for key in ("data_source", "epochs", "seed"):
        if getattr(args, key, None) is not None:
            profile[key] = getattr(args, key)
    if not profile.get("data_source"):
        profile["data_source"] = str(sources.locate())  # recorded in the model card
    splits = sources.load_source(profile.get("data_source"), seed=profile.get("seed", 0))
    return profile, splits


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model from a params profile", description=(
        "Train the main, lite or baseline model of a params profile (its main:, lite: or baseline: block). Runs go to "
        "runs/<profile>/<name>/ (log.csv, best.keras, model.keras, card.json) and resume after an "
        "interruption. --ship copies the result into fer/weights/ with its model card."))
    _profile_args(p)
    p.add_argument("--model", default="main", choices=["main", "lite", "baseline"],
                   help="profile block to train: main (the main model), lite or baseline")
    p.add_argument("--hp", help="JSON file of hyperparameters overriding the block (e.g. the tuner's best)")
    p.add_argument("--run-dir", help="where to write the run (default: runs/<profile>/<name>)")
    p.add_argument("--init", help="a trained .keras model to start from (fine-tuning); with the block's arch 'ensemble', "
                                  "an averaged model such as fer/weights/main.keras, fine-tuned as one graph")
    p.add_argument("--labels", choices=["fer2013", "ferplus"],
                   help="learn FER2013's labels or the FER+ vote distributions (default: the block's, else fer2013)")
    p.add_argument("--ship", action="store_true", help="copy the trained model into fer/weights/")
    p.add_argument("--float16-weights", action="store_true",
                   help="round the trained weights to float16 before evaluating and ship them so: half the file "
                        "size (the full profile's 5 M parameters are 19.8 MB in float32), and the card's numbers "
                        "are exactly the shipped file's")
    p.add_argument("--weights-dir", help="with --ship: where to write <name>.keras and its card (default: fer/weights/)")
    g = p.add_argument_group("data-parallel training (Keras' keras.distribution, JAX backend; docs/scaling.md)")
    g.add_argument("--devices", metavar="all|N",
                   help="split each batch between this many local devices (GPUs; 'all': every one) "
                        "(default: 1; with several processes: all)")
    g.add_argument("--global-batch", type=int, metavar="B",
                   help="the batch of one optimiser step over all devices (default: the profile's batch_size); "
                        "the learning rate is scaled by B / batch_size")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="several processes (one per machine): process 0's address, the same on every one "
                        "(default: $KERAS_DISTRIBUTION_JOB_ADDRESSES)")
    g.add_argument("--num-processes", type=int, metavar="N",
                   help="how many processes train together (default: $KERAS_DISTRIBUTION_NUM_PROCESSES, else 1)")
    g.add_argument("--process-id", type=int, metavar="I",
                   help="this process's number, 0 to N-1; 0 writes the run (default: $KERAS_DISTRIBUTION_PROCESS_ID)")
    p.set_defaults(handler=cmd_train)


def cmd_train(args) -> int:
    require_checkout("train")
    from fer.training import parallel, runs

    try:  # first: several processes must join before anything uses JAX
        plan = parallel.plan(args.devices, args.coordinator, args.num_processes, args.process_id)
    except parallel.ParallelError as err:
        raise CLIError(str(err)) from err
    if plan.distributed:
        print(f"data-parallel training on {plan.describe()}; this is process {plan.process}")
    profile, splits = _load_profile_and_data(args)
    hp = json.loads(open(args.hp).read()) if args.hp else {}
    if args.epochs is not None:  # the profile's flat epochs only sets the main block's; this is explicit
        hp["epochs"] = args.epochs
    hp |= {key: value for key in ("init", "labels") if (value := getattr(args, key)) is not None}
    from fer import config

    try:  # a block that cannot be trained as given (e.g. a lite that needs a teacher) says so in one line
        config.config_from_profile(profile, args.model, hp)
    except ValueError as err:
        raise CLIError(str(err)) from None
    try:
        card = runs.run(profile, splits, block=args.model, hp=hp, run_dir=args.run_dir, verbose=2,
                        float16_weights=args.float16_weights, plan=plan, global_batch=args.global_batch)
    except parallel.ParallelError as err:
        raise CLIError(str(err)) from err
    if "metrics" not in card:  # another process than 0: that one reports, and ships
        print(f"process {card['process']}: done; process 0 wrote {card['run_dir']}")
        return 0
    _report_run(card, args.ship and plan.chief, args.weights_dir)  # a reused run: every process has its card
    return 0


def _report_run(card: dict, ship: bool, weights_dir=None) -> None:
    """Print a finished run's card in one line; with ``ship`` copy it into fer/weights/."""
    from fer.training import runs

    m = card["metrics"]["validation"]
    print(f"{card['name']}: {card['params']:,} params, {card['epochs_run']} epochs in "
          f"{card['train_wall_s'] / 60:.1f} min; {card['data']['validation']} accuracy "
          f"{m['accuracy_single']:.4f} (flip {m['accuracy_flip']:.4f}, ten-crop {m['accuracy_tencrop']:.4f}), "
          f"macro-F1 {m['macro_f1_single']:.4f}")
    if ship:
        dest = runs.ship(card["run_dir"], name=card["name"], weights_dir=weights_dir)
        print(f"shipped {dest} ({dest.stat().st_size / 1e6:.1f} MB)")


def add_ensemble(sub) -> None:
    p = sub.add_parser("ensemble", help="average finished training runs into one model", description=(
        "Combine runs written by 'python -m fer train' (e.g. the same profile with --seed 0, 1, 2) into "
        "one .keras model that averages their probabilities. The members must share the crop and "
        "the data; the ensemble is evaluated on the profile's validation split and its card lists "
        "each member's recipe, time and accuracy. Example: python -m fer ensemble runs/cpu/main "
        "runs/cpu/main-s1 runs/cpu/main-s2 --ship"))
    _profile_args(p, training=False)
    p.add_argument("members", nargs="+", help="training run folders (each with model.keras and card.json)")
    p.add_argument("--name", default="main", help="name of the model (and of the shipped file; default: main)")
    p.add_argument("--run-dir", help="where to write it (default: runs/<profile>/<name>-ensemble)")
    p.add_argument("--ship", action="store_true", help="copy the ensemble into fer/weights/<name>.keras")
    p.add_argument("--float16-weights", action="store_true",
                   help="round the weights to float16 before evaluating and store them so: half the file size, "
                        "and the card's numbers are exactly the shipped file's")
    p.set_defaults(handler=cmd_ensemble)


def cmd_ensemble(args) -> int:
    require_checkout("ensemble")
    from fer.training import runs

    if len(args.members) < 2:
        raise CLIError("an ensemble needs at least two training runs")
    profile, splits = _load_profile_and_data(args)
    card = runs.ensemble_run(profile, splits, args.members, run_dir=args.run_dir, name=args.name,
                             float16_weights=args.float16_weights)
    _report_run(card, args.ship)
    return 0


def add_tune(sub) -> None:
    p = sub.add_parser("tune", help="keras-tuner search over the main model's hyperparameters", description=(
        "Hyperband (or the profile's tune.algorithm) over width, depth, dropout, learning rate, "
        "weight decay and augmentation strength. Writes best_hp.json and trials.csv to "
        "runs/<profile>/tune/. A rerun with the same settings and data resumes that search (one folder "
        "per settings; changed settings start a new one beside it); --overwrite starts it over. "
        "--train then retrains the main model from the best hyperparameters. "
        "--distributed spreads the search over processes, GPUs and machines with keras-tuner's own "
        "chief/worker mode: the same command on every machine, with its role (docs/scaling.md)."))
    _profile_args(p)
    p.add_argument("--dir", help="search directory (default: runs/<profile>/tune); may be shared storage")
    p.add_argument("--overwrite", action="store_true", help="discard the earlier search with the same settings in --dir")
    p.add_argument("--train", action="store_true", help="retrain the main model from the best hyperparameters")
    g = p.add_argument_group("distributed search (keras-tuner's chief and workers; its gRPC port has no "
                             "authentication: keep it on 127.0.0.1, a private network or an SSH tunnel)")
    g.add_argument("--distributed", choices=["chief", "worker", "local"],
                   help="chief: hand out trials and write the results (listens on --oracle, default 127.0.0.1:8000); "
                        "worker: run trials for the chief at --oracle; local: a chief plus --workers workers on "
                        "this host, one per GPU by default, each seeing only its own GPU")
    g.add_argument("--oracle", metavar="HOST:PORT", help="where the chief listens (chief: the address to bind; "
                   "0.0.0.0 for every interface) or where the workers reach it")
    g.add_argument("--tuner-id", help="a worker's id, unique in the search and the same when it is started again "
                   "(it then takes up its unfinished trial); default: tuner-<host>, or tuner-<host>-gpu<N> under CUDA_VISIBLE_DEVICES=N")
    g.add_argument("--workers", type=int, help="with --distributed local: how many workers (default: one per GPU, "
                   "or 1 without GPUs)")
    g.add_argument("--restarts", type=int, default=2, help="with --distributed local: start a worker (or the "
                   "chief) that dies again, at most this many times each (default: 2)")
    p.set_defaults(handler=cmd_tune)


def cmd_tune(args) -> int:
    require_checkout("tune")
    from fer.training import cluster, runs, tune

    if args.distributed == "local":
        return _tune_on_this_host(args)
    if args.distributed:
        try:
            role = cluster.role(args.distributed, args.oracle, args.tuner_id)
        except ValueError as err:
            raise CLIError(str(err)) from None
        if note := cluster.security_note(role):
            print(f"warning: {note}")
        cluster.apply(role)
    elif args.oracle or args.tuner_id:
        raise CLIError("--oracle and --tuner-id belong to a distributed search: add --distributed chief|worker")
    profile, splits = _load_profile_and_data(args)
    result = tune.search(profile, splits, directory=args.dir, overwrite=args.overwrite, verbose=2)
    if result.role == "worker":
        print(f"{os.environ['KERASTUNER_TUNER_ID']}: the search is over; this worker finished {result.trials} "
              f"trial(s) ({', '.join(result.ran) or 'none'}); the chief writes best_hp.json")
        return 0
    print(result.table.to_string(max_rows=20))
    print(f"best hyperparameters ({result.trials} trials): {json.dumps(result.best_hp)}")
    print(f"saved {result.directory / 'best_hp.json'}")
    if args.train:
        card = runs.run(profile, splits, block="main", hp=result.best_hp, verbose=2)
        print(f"retrained main model: {card['metrics']['validation']}")
    return 0


def _tune_on_this_host(args) -> int:
    """``--distributed local``: the chief and the workers as child processes of this one."""
    from fer.training import cluster

    if args.tuner_id:
        raise CLIError("--tuner-id is for one worker; --distributed local names its workers tuner0, tuner1, ...")
    if args.workers is not None and args.workers < 1:
        raise CLIError("--workers must be at least 1")
    try:
        host, port = cluster.parse_address(args.oracle) if args.oracle else ("127.0.0.1", None)
    except ValueError as err:
        raise CLIError(str(err)) from None
    forwarded = ["--profile", args.profile]
    for flag, value in (("--data", args.data_source), ("--epochs", args.epochs), ("--seed", args.seed),
                        ("--dir", args.dir)):
        if value is not None:
            forwarded += [flag, str(value)]
    if args.overwrite:
        forwarded.append("--overwrite")  # the chief's to act on; the workers ignore it
    # --train stays here: the launcher would stop a chief still training once every worker is done
    code = cluster.launch(forwarded, workers=args.workers, host=host, port=port, restarts=args.restarts)
    if code:
        raise CLIError(f"the distributed search did not finish (exit status {code}); the same command resumes it")
    if args.train:
        from fer.training import runs, tune

        profile, splits = _load_profile_and_data(args)
        directory = Path(args.dir) if args.dir else tune.directory_for(profile)
        best_hp = json.loads((directory / "best_hp.json").read_text())
        card = runs.run(profile, splits, block="main", hp=best_hp, verbose=2)
        print(f"retrained main model: {card['metrics']['validation']}")
    return 0


def add_ship(sub) -> None:
    p = sub.add_parser("ship", help="copy finished runs into fer/weights (the explicit ship step)", description=(
        "Copy each run folder's model.keras into fer/weights/<name>.keras (name: the run's card, e.g. main "
        "for an ensemble, lite) with its model card, its per-epoch curves and its TFLite file. This is the "
        "only way a trained model replaces a shipped one; `make reproduce` never ships. Example, after "
        "`make reproduce PROFILE=full`: python -m fer ship runs/full/main-ensemble runs/full/lite"))
    p.add_argument("runs", nargs="*", help="run folders (each with model.keras and card.json)")
    p.add_argument("--profile", help="instead of run folders: the ensemble and the lite that `make reproduce` made "
                   "with this profile (runs/<profile>/main-ensemble and runs/<profile>/lite; auto: full with a GPU, "
                   "cpu without)")
    p.add_argument("--weights-dir", help="where to write them (default: fer/weights/)")
    p.set_defaults(handler=cmd_ship)


def cmd_ship(args) -> int:
    require_checkout("ship")
    from fer import config
    from fer.training import recipe, runs

    if bool(args.runs) == bool(args.profile):
        raise CLIError("name the run folders to ship, or --profile NAME for that profile's ensemble and lite (not both)")
    if args.profile:
        dirs = recipe.run_dirs(config.load_profile(args.profile))
        args.runs = [dirs["ensemble"], dirs["lite"]]
    for folder in map(Path, args.runs):
        if not ((folder / "card.json").is_file() and (folder / "model.keras").is_file()):
            raise CLIError(f"{folder} is not a finished run (no card.json and model.keras); nothing was shipped")
    for folder in map(Path, args.runs):
        dest = runs.ship(folder, weights_dir=args.weights_dir)
        print(f"shipped {folder} -> {dest} ({dest.stat().st_size / 1e6:.1f} MB)")
    return 0


# --------------------------------------------------------------------------- reports


def add_reproduce(sub) -> None:
    p = sub.add_parser("reproduce", help="execute every notebook with a profile and render the reports", description=(
        "Run notebooks/01_explore ... 04_webcam_demo in order with papermill (kernel: this "
        "interpreter) into reports/executed/, convert each to HTML with the code hidden into "
        "reports/html/, and write reports/html/index.html with the headline metrics. Stops at "
        "the first failing notebook, naming the cell."))
    p.add_argument("--profile", default="auto", help="params profile: smoke, cpu, full, a YAML path, or auto: full "
                   "with a GPU, cpu without (default: auto)")
    p.add_argument("--data", dest="data_source", help="FER2013 zip/folder/CSV, or 'synthetic' (default: the profile's)")
    p.add_argument("--model", dest="model_path", help="model 03 evaluates (default: the ensemble 02 trained in this run; "
                   "with --skip-training the bundled one)")
    p.add_argument("--eval-source", help="03 also evaluates these labelled photos of your own (class folders, a zip "
                   "of them or a path,label CSV; see `python -m fer evaluate`)")
    p.add_argument("--eval-mode", choices=["pipeline", "crops"], help="how 03 reads --eval-source: photos (detect and "
                   "crop; the default) or face crops")
    p.add_argument("--skip-training", action="store_true",
                   help="no search and no training: 02 shows the shipped models' recipe and cards, 03 evaluates the "
                        "bundled model; the committed reports are made so, with --profile full")
    p.add_argument("--only", nargs="+", metavar="NN",
                   help="run only the notebooks whose names start with these (e.g. --only 03 04); the others keep their reports")
    p.set_defaults(handler=cmd_reproduce)


def cmd_reproduce(args) -> int:
    require_checkout("reproduce")
    from fer.reporting import reports

    if args.eval_source and not os.path.exists(args.eval_source):
        raise CLIError(f"--eval-source {args.eval_source}: no such file or folder")
    # Notebooks run in notebooks/: paths given here are made absolute first.
    overrides = {k: str(os.path.abspath(v)) if v and (k == "model_path" or os.path.exists(v)) else v
                 for k, v in (("data_source", args.data_source), ("model_path", args.model_path),
                              ("eval_source", args.eval_source))}
    overrides["eval_mode"] = args.eval_mode
    if args.skip_training:
        overrides.update(train_models=False, tune=False)
    try:
        reports.reproduce(args.profile, overrides, only=args.only)
    except (reports.NotebookFailed, ValueError) as err:
        raise CLIError(str(err)) from None
    return 0


def add_reports(sub) -> None:
    p = sub.add_parser("reports", help="render the already executed notebooks to HTML", description=(
        "Convert reports/executed/*.ipynb to reports/html/ (code hidden, figures embedded) and "
        "rewrite reports/html/index.html. Executes nothing."))
    p.add_argument("--index-only", action="store_true",
                   help="only rewrite the front page (reports/html/index.html) from the reports and metrics already "
                        "there; needs no executed notebooks (they are not committed)")
    p.set_defaults(handler=cmd_reports)


def cmd_reports(args) -> int:
    require_checkout("reports")
    from fer.config import REPORTS_DIR
    from fer.reporting import reports

    if args.index_only:
        print(f"index: {reports.write_index(REPORTS_DIR / 'html', REPORTS_DIR)}")
    else:
        reports.render()
    return 0
