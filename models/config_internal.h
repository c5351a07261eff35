/* models/config_internal.h — what config.c gives the rest of pt_models; internal, not installed. */
#ifndef PT_MODELS_CONFIG_INTERNAL_H
#define PT_MODELS_CONFIG_INTERNAL_H

#include "pipetrain/model_config.h"

/* Fills `out` with preset `name` and returns 1, or returns 0 (out untouched) when no preset has that
 * name. */
int pt__model_config_preset(const char *name, pt_model_config *out);

#endif
