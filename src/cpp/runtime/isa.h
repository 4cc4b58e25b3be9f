// Which instruction set the kernels run with: what the CPU and the OS support (CPUID and XGETBV
// on x86), and the RNNFAST_ISA environment variable that forces a lower one.
#pragma once
#include <string>

namespace rnnfast {

enum class Isa : int { Generic = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };

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

}  // namespace rnnfast
