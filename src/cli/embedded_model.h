/* stories260K.gguf (Karpathy's tinyllamas, MIT licence; see models/README.md),
 * linked into the binary so that `serve` and `run` work with no model file. */
#ifndef ELLIOTT_CLI_EMBEDDED_MODEL_H
#define ELLIOTT_CLI_EMBEDDED_MODEL_H

#include <stddef.h>

#define EMBEDDED_MODEL_NAME "stories260K"

const void *embedded_model_data(void);
size_t embedded_model_size(void);

#endif
