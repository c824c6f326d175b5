"""The forward-pass layer both backends share: residual streams, edits and read-outs, run set-up,
and the checks before a trace goes to NDIF."""
