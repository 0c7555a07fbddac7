/*
 * scratch.h - the scratch directory of a fuzz harness (scratch.c).
 */
#ifndef MSTORE_FUZZ_SCRATCH_H
#define MSTORE_FUZZ_SCRATCH_H

const char *fuzz_scratch_open(const char *name);
void fuzz_rm_tree(const char *path);

#endif
