#include "runtime/isa.h"

#include <cstdlib>
#include <stdexcept>

#if defined(__x86_64__) || defined(_M_X64)
#define RNNFAST_X86 1
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <cstdint>
#elif defined(__aarch64__)
#define RNNFAST_ARM64 1  // NEON is part of the base architecture: no run-time check needed
#endif

namespace rnnfast {
namespace {

#ifdef RNNFAST_X86
struct CpuFeatures {
  bool avx2 = false, avx512 = false, avx512_bf16 = false, amx = false;
};

uint64_t read_xcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

// Linux hands out the AMX tile data state only to a process that asks (arch_prctl
// ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, Linux 5.16+); the grant covers every thread.
bool request_amx() {
#if defined(__linux__)
  constexpr long kReqXcompPerm = 0x1023, kXtileData = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) == 0;
#else
  return false;
#endif
}

// The CPU must have the instructions and the OS must save the registers they use (XCR0):
// bits 1-2 for XMM/YMM (AVX2), plus 5-7 for the opmask and ZMM registers (AVX-512).
CpuFeatures detect() {
  CpuFeatures f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6, zmm_state = (xcr0 & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  f.avx2 = ymm_state && fma && (b & (1u << 5));
  // AVX-512F and BW (leaf 7 EBX bits 16, 30): the avx512 kernels are built with -mavx512bf16,
  // which lets the compiler use BW instructions (every AVX-512 CPU but Xeon Phi has them).
  f.avx512 = f.avx2 && zmm_state && (b & (1u << 16)) && (b & (1u << 30));
  // AMX-BF16 and AMX-TILE: EDX bits 22, 24; the OS must enable the tile state (XCR0 17-18).
  const bool amx_cpu = (d & (1u << 22)) && (d & (1u << 24)) && (xcr0 & 0x60000) == 0x60000;
  // AVX512_BF16: leaf 7, sub-leaf 1, EAX bit 5.
  if (f.avx512 && a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512_bf16 = a & (1u << 5);
  f.amx = f.avx512_bf16 && amx_cpu && request_amx();
  return f;
}
#endif

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512Amx:
      return "avx512_amx";
    case Isa::Avx512Bf16:
      return "avx512_bf16";
    case Isa::Avx512:
      return "avx512";
    case Isa::Avx2:
      return "avx2";
    case Isa::Neon:
      return "neon";
    default:
      return "generic";
  }
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : kIsasBestFirst)
    if (name == isa_name(isa)) return isa;
  throw std::invalid_argument(
      "RNNFAST_ISA: expected one of avx512_amx, avx512_bf16, avx512, avx2, neon, generic, got '" +
      name + "'");
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::Generic:
      return true;
#ifdef RNNFAST_X86
    case Isa::Avx2: {
      static const bool ok = detect().avx2;
      return ok;
    }
    case Isa::Avx512: {
      static const bool ok = detect().avx512;
      return ok;
    }
    case Isa::Avx512Bf16: {
      static const bool ok = detect().avx512_bf16;
      return ok;
    }
    case Isa::Avx512Amx: {
      static const bool ok = detect().amx;
      return ok;
    }
#endif
#ifdef RNNFAST_ARM64
    case Isa::Neon:
      return true;
#endif
    default:
      return false;
  }
}

Isa best_isa() {
  for (Isa isa : kIsasBestFirst)
    if (isa_supported(isa)) return isa;
  return Isa::Generic;
}

namespace {

// RNNFAST_ISA when set, else the best: read once, at the first call.
Isa chosen_isa() {
  const char* forced = std::getenv("RNNFAST_ISA");
  if (!forced || !*forced) return best_isa();
  const Isa isa = parse_isa(forced);
  if (!isa_supported(isa)) {
    throw std::invalid_argument(std::string("RNNFAST_ISA: '") + isa_name(isa) +
                                "' is not supported by this CPU or build (best here: '" +
                                isa_name(best_isa()) + "')");
  }
  return isa;
}

}  // namespace

Isa active_isa() {
  static const Isa isa = chosen_isa();  // a throw leaves it unset: the next call tries again
  return isa;
}

}  // namespace rnnfast
