/* infer.c — placeholder until the module lands. */
#include "valley/infer.h"

#include "valley/error.h"

int infer_command(vl_comm_t *c, const vl_deck_t *d, int ninputs, char **inputs, const char *outdir)
{
    (void)c; (void)d; (void)ninputs; (void)inputs; (void)outdir;
    return VL_FAIL_ALL(VL_EINPUT, "command 'infer' is not implemented in this version");
}
