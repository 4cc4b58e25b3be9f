// Which instruction set the kernels run with: what the CPU and the OS support (CPUID and XGETBV
// on x86), and the RNNFAST_ISA environment variable that forces a lower one.
#pragma once
#include <string>

namespace rnnfast {

// Avx512Bf16 runs the Avx512 kernels with its bfloat16 products in vdpbf16ps (AVX512_BF16);
// under Avx512 the same products widen bfloat16 to float32 (the same numbers, slower).
// Avx512Amx adds AMX tiles (AMX-TILE, AMX-BF16) for the bf16 matrix products (kernels/amx.h).
enum class Isa : int { Generic = 0, Avx2 = 1, Avx512 = 2, Neon = 3, Avx512Bf16 = 4, Avx512Amx = 5 };

const char* isa_name(Isa isa);
// Throws std::invalid_argument for a name that is no ISA.
Isa parse_isa(const std::string& name);
// Compiled into this build, and runnable on this CPU with this OS.
bool isa_supported(Isa isa);
Isa best_isa();
// The ISA every kernel uses, chosen once for the life of the process: RNNFAST_ISA when it is set,
// else best_isa(). Throws std::invalid_argument naming RNNFAST_ISA for a value that is no ISA or
// that this CPU cannot run (the extension calls it at import, so the import fails there).
Isa active_isa();
// The ISAs this build knows, best first.
inline constexpr Isa kIsasBestFirst[] = {Isa::Avx512Amx, Isa::Avx512Bf16, Isa::Avx512,
                                         Isa::Avx2,      Isa::Neon,       Isa::Generic};

}  // namespace rnnfast
