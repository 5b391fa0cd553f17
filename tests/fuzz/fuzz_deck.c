/* fuzz_deck.c — libFuzzer target: the deck parser (deck_load on a temporary file).
 * Input: the deck file; if it starts with "S:", the rest (up to a NUL) is one
 * "--set section.key=value" string applied to no file instead. Every key of the
 * loaded deck is then read back through deck_str, and deck_text is re-parsed: the
 * effective deck must load again (round trip). */
#include <stdint.h>

#include "fuzz_common.h"
#include "valley/deck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vl_error_clear();
    vl_deck_t *d = NULL;
    int st;
    if (size >= 2 && data[0] == 'S' && data[1] == ':') {
        char *set = malloc(size - 1);
        memcpy(set, data + 2, size - 2);
        set[size - 2] = '\0';
        char *sets[1] = {set};
        st = deck_load(NULL, 1, sets, &d);
        free(set);
    } else {
        st = deck_load(fz_write(0, "deck.ini", data, size), 0, NULL, &d);
    }
    fz_check_status(st, "deck_load");
    if (st == VL_OK) {
        if (!d) abort();
        for (int i = 0; deck_key(i); i++) (void)deck_str(d, deck_key(i));
        const char *text = deck_text(d);
        vl_deck_t *d2 = NULL;
        vl_error_clear();
        int st2 = deck_load(fz_write(1, "effective.ini", text, strlen(text)), 0, NULL, &d2);
        if (st2 != VL_OK) {
            fprintf(stderr, "the effective deck does not load again: %s\n", vl_error_message());
            abort();
        }
        if (strcmp(deck_text(d2), text) != 0) {
            fprintf(stderr, "the effective deck changes when loaded again\n");
            abort();
        }
        deck_free(d2);
    } else if (d) {
        abort(); /* *out must be NULL on failure */
    }
    deck_free(d);
    return 0;
}
