/* typed: functions whose arguments and return values rtrace renders from
 * their DWARF types.
 *
 * Exercises: integers of every width and sign (negative values, upper
 * register bits the callee must ignore), C strings (normal, longer than the
 * default limit of 64, NULL, with a quote and a newline), plain char, enums
 * (known and unknown values), bool, a struct pointer, a struct by value, a
 * large struct in memory and floating-point arguments interleaved with
 * integers, eight integer arguments (two on the stack), void, and typed
 * return values (negative int, bool, enum, char *, unsigned 64-bit).
 *
 * Usage: typed   (no arguments)
 * Output (stdout), exactly (ADDR is the address of `pt` in main, %p):
 *     narrow=64945
 *     wide=-9000000007
 *     wide_max=18446744073709551615
 *     negate=-1
 *     measure=5,100,0,9
 *     upper=65
 *     paint=5,42
 *     name=green
 *     flip=0
 *     point=ADDR
 *     move=4
 *     area=6
 *     mixed=3
 *     eight=-11
 *     nothing
 * Exit status: 0. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fixture.h"

enum color { RED, GREEN = 5, BLUE = -3 };

struct point {
    int x;
    int y;
};

struct big {
    long a, b, c;
};

PROBED int narrow(int8_t a, uint8_t b, int16_t c, uint16_t d)
{
    BARRIER();
    return a + b + c + d;
}

PROBED int64_t wide(int32_t a, uint32_t b, int64_t c, uint64_t d)
{
    BARRIER();
    return a + c + (int64_t)(d - d) + (int64_t)(b - b);
}

PROBED uint64_t wide_max(uint64_t d)
{
    BARRIER();
    return d;
}

PROBED int negate(int x)
{
    BARRIER();
    return -x;
}

PROBED size_t measure(const char *s)
{
    BARRIER();
    return s ? strlen(s) : 0;
}

PROBED int upper(char c)
{
    BARRIER();
    return c - 32;
}

PROBED enum color paint(enum color c)
{
    BARRIER();
    return c == RED ? GREEN : (enum color)42;
}

PROBED const char *name_of(enum color c)
{
    BARRIER();
    return c == GREEN ? "green" : c == RED ? "red" : "blue";
}

PROBED bool flip(bool b)
{
    BARRIER();
    return !b;
}

PROBED int move(struct point *p, int dx)
{
    BARRIER();
    return p->x + dx;
}

PROBED int area(struct point p)
{
    BARRIER();
    return p.x * p.y;
}

PROBED double mixed(double x, int a, struct big b, float y, int c)
{
    BARRIER();
    return x + a + (double)b.a + y + c;
}

PROBED long eight(long a, int b, short c, unsigned char d, unsigned e, long f, int g,
                  long h)
{
    BARRIER();
    return a + b + c + d + e + f + g + h;
}

PROBED void nothing(void)
{
    BARRIER();
}

int main(void)
{
    char long_string[101];
    memset(long_string, 'a', 100);
    long_string[100] = '\0';

    printf("narrow=%d\n", narrow(-5, 250, -300, 65000));
    printf("wide=%lld\n", (long long)wide(-7, 4000000000u, -9000000000LL, UINT64_MAX));
    printf("wide_max=%llu\n", (unsigned long long)wide_max(UINT64_MAX));
    printf("negate=%d\n", negate(1));
    size_t m1 = measure("hello");
    size_t m2 = measure(long_string);
    size_t m3 = measure(NULL);
    size_t m4 = measure("say \"hi\"\n");
    printf("measure=%zu,%zu,%zu,%zu\n", m1, m2, m3, m4);
    printf("upper=%d\n", upper('a'));
    enum color p1 = paint(RED);
    enum color p2 = paint(BLUE);
    printf("paint=%d,%d\n", (int)p1, (int)p2);
    printf("name=%s\n", name_of(GREEN));
    printf("flip=%d\n", (int)flip(true));
    struct point pt = {1, 2};
    printf("point=%p\n", (void *)&pt);
    printf("move=%d\n", move(&pt, 3));
    struct point q = {2, 3};
    printf("area=%d\n", area(q));
    struct big b = {-1, 0, 0};
    printf("mixed=%d\n", (int)mixed(0.5, 1, b, 0.5f, 2));
    printf("eight=%ld\n", eight(1, -2, 3, 4, 5, 6, -7, -21));
    nothing();
    puts("nothing");
    return 0;
}
