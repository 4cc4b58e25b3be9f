// How a caller stops a long call (Ctrl-C): it hands the call a Interrupt whose `poll` is asked,
// on the calling thread only and at most every kPollInterval, whether to stop. Once it answers
// true, every loop that checks `stop_requested` leaves at its next safe point, and the call
// throws Interrupted (outputs are then partly written and must be discarded; see rnn/stack.h for
// what a stopped call leaves). The core never knows what the poll looks at (Python's pending
// signals, for the binding).
#pragma once
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

namespace rnnfast {

class Interrupted : public std::runtime_error {
 public:
  Interrupted() : std::runtime_error("interrupted") {}
};

class Interrupt {
 public:
  using Poll = bool (*)(void* context);
  static constexpr std::chrono::milliseconds kPollInterval{20};

  Interrupt(Poll poll, void* context)
      : poll_(poll), context_(context), caller_(std::this_thread::get_id()) {}
  Interrupt(const Interrupt&) = delete;
  Interrupt& operator=(const Interrupt&) = delete;

  // Any thread, cheap: whether a stop was asked for.
  bool stop_requested() const { return stopped_.load(std::memory_order_relaxed); }

  // Polls when called on the caller's thread and the interval has passed; true once stopped.
  bool check() {
    if (stop_requested()) return true;
    if (!poll_ || std::this_thread::get_id() != caller_) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < kPollInterval) return false;
    last_ = now;
    if (poll_(context_)) stopped_.store(true, std::memory_order_relaxed);
    return stop_requested();
  }

  // Throws Interrupted when a stop was asked for (outside parallel regions only).
  void throw_if_stopped() const {
    if (stop_requested()) throw Interrupted();
  }

 private:
  Poll poll_;
  void* context_;
  std::thread::id caller_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  std::atomic<bool> stopped_{false};
};

// Null-safe forms for the loops (most calls have no Interrupt).
inline bool interrupt_check(Interrupt* i) {
  return i && i->check();
}
inline bool interrupt_requested(const Interrupt* i) {
  return i && i->stop_requested();
}
inline void interrupt_throw(const Interrupt* i) {
  if (i) i->throw_if_stopped();
}

}  // namespace rnnfast
