/* libvdso: an IFUNC whose resolver returns an address in the vDSO.
 *
 * Exercises: `kernel_time` is an IFUNC whose resolver answers with the
 * vDSO's `__vdso_time` (found through getauxval(AT_SYSINFO_EHDR) and the
 * vDSO's dynamic symbols), so calls of it run the kernel's code that every
 * process maps. Called through the PLT, lazily bound: the resolver runs at
 * the first call. A probe on it cannot be placed there; rtrace says why.
 *
 * Built with -shared -fPIC into libvdso.so. Exports kernel_time(time_t *),
 * as time(2). */
#include <elf.h>
#include <link.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>

#include "fixture.h"

typedef time_t (*time_fn)(time_t *);

static time_t fallback(time_t *t)
{
    return time(t);
}

/* The vDSO's __vdso_time, from its dynamic symbol table. */
static time_fn vdso_time(void)
{
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)getauxval(AT_SYSINFO_EHDR);
    if (!eh)
        return fallback;
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)((const char *)eh + eh->e_phoff);
    uintptr_t base = 0;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0)
            base = (uintptr_t)eh - ph[i].p_vaddr;
        if (ph[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)((const char *)eh + ph[i].p_offset);
    }
    if (!dyn)
        return fallback;
    const ElfW(Sym) *syms = NULL;
    const char *names = NULL;
    const Elf32_Word *hash = NULL;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        if (dyn->d_tag == DT_SYMTAB)
            syms = (const ElfW(Sym) *)(base + dyn->d_un.d_ptr);
        if (dyn->d_tag == DT_STRTAB)
            names = (const char *)(base + dyn->d_un.d_ptr);
        if (dyn->d_tag == DT_HASH)
            hash = (const Elf32_Word *)(base + dyn->d_un.d_ptr);
    }
    if (!syms || !names || !hash)
        return fallback;
    for (Elf32_Word i = 0; i < hash[1]; i++)
        if (syms[i].st_value && strcmp(names + syms[i].st_name, "__vdso_time") == 0)
            return (time_fn)(base + syms[i].st_value);
    return fallback;
}

static time_fn resolve_kernel_time(void)
{
    return vdso_time();
}

time_t kernel_time(time_t *t) __attribute__((ifunc("resolve_kernel_time")));
