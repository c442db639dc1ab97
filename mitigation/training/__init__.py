"""The shared training layer: one pipeline (load, LoRA or full, TRL stages, save, merge, resume, the eval bridge on
every checkpoint, the final report) that RESA and every trained mitigation method stand on."""
