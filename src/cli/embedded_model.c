#include "cli/embedded_model.h"

extern const unsigned char elliott_embedded_model_start[];
extern const unsigned char elliott_embedded_model_end[];

const void *embedded_model_data(void)
{
    return elliott_embedded_model_start;
}

size_t embedded_model_size(void)
{
    return (size_t)(elliott_embedded_model_end - elliott_embedded_model_start);
}
