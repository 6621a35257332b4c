"""`minirun-oci`: runc's command line over minirun's launch code. An OCI runtime knows bundles
(a config.json and a root filesystem) and the state directory under its --root, nothing of
minirun's store: config.py turns a bundle into the LaunchPlan `minirun run` starts from,
state.py keeps the per-container state, container.py carries out the verbs, main.py parses."""
