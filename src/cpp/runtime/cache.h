// The size of one core's L2 cache, which decides whether a thread can keep a layer's whole
// recurrent weights close (rnn/plan.cpp).
#pragma once
#include "runtime/types.h"

namespace rnnfast {

// Bytes of L2 a core has, as the OS reports it (glibc's sysconf, else Linux's sysfs), read once;
// 1 MiB when neither says (Zen 4 and 5 have 1 MiB, Zen 3 512 KiB, Sapphire Rapids 2 MiB).
index_t l2_cache_bytes();

}  // namespace rnnfast
