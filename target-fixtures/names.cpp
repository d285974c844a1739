/* names: C++ functions to probe by their demangled names.
 *
 * Exercises: matching `ns::Class::method`, an overload set (`ns::over`, two
 * functions), a free function in the global namespace (`inner`, mangled
 * `_Z5inneri`) and globs over demangled names (`ns::*`), and demangled names
 * in the output.
 *
 * Calls, exactly: inner(int) 3 times; ns::Class::method(int) 2 times;
 * ns::Class::peek() const 1 time; ns::over(int) 2 times; ns::over(double)
 * 1 time; ns::twice(int) 4 times.
 *
 * Usage: names   (no arguments)
 * Output (stdout), exactly:
 *     sum=91
 * Exit status 0. */
#include <cstdio>

#include "fixture.h"

PROBED int inner(int x) { return x + 1; }

namespace ns {

class Class {
  public:
    explicit Class(int base) : base_(base) {}
    PROBED int method(int x);
    PROBED int peek() const;

  private:
    int base_;
};

int Class::method(int x) { return base_ + x; }
int Class::peek() const { return base_; }

PROBED int over(int x) { return x * 2; }
PROBED int over(double x) { return static_cast<int>(x * 3); }
PROBED int twice(int x) { return 2 * x; }

} // namespace ns

int main() {
    int sum = 0;
    for (int i = 1; i <= 3; i++)
        sum += inner(i); // 2 + 3 + 4 = 9
    ns::Class c(10);
    sum += c.method(1) + c.method(2); // 11 + 12 = 23
    sum += c.peek();                  // 10
    sum += ns::over(3) + ns::over(4); // 6 + 8 = 14
    sum += ns::over(5.0);             // 15
    for (int i = 1; i <= 4; i++)
        sum += ns::twice(i); // 2 + 4 + 6 + 8 = 20
    std::printf("sum=%d\n", sum);
    return 0;
}
