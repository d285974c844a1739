/* lazyifunc: IFUNCs whose PLT slots the dynamic linker binds lazily, at
 * their first call, and that libc itself never calls.
 *
 * Exercises: `strncat` and `wcsncmp` are glibc IFUNCs that libc calls
 * nowhere itself, so with lazy binding (the default) no GOT slot holds
 * their implementation before the program's first call of each: a probe on
 * them must still see that first call, and every one after it.
 *
 * Calls, exactly: strncat 3 times, wcsncmp once, each through the PLT.
 *
 * Usage: lazyifunc   (no arguments)
 * Output (stdout), exactly:
 *     abccc -1
 * Exit status: 0. */
#include <stdio.h>
#include <string.h>
#include <wchar.h>

int main(void)
{
    char b[32] = "ab";
    /* Through a volatile pointer: a call the compiler cannot fold. */
    const char *volatile src = "cd";
    for (int i = 0; i < 3; i++)
        strncat(b, src, 1);
    printf("%s %d\n", b, wcsncmp(L"a", L"b", 1));
    return 0;
}
