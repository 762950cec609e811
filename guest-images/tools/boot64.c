/*
 * boot64: the smallest KVM loader that boots a bzImage through the 64-bit boot protocol entry
 * (load address + 0x200, RSI = zero page, long mode with identity paging). It exists to test
 * tiny.bzImage's 64-bit entry the way tsvmm will use it, since QEMU always enters bzImages
 * through their real-mode setup code. One vCPU; COM1 output goes to stdout; the guest's write
 * to port 0xf4 becomes this program's exit status.
 *
 *   boot64 <bzImage> "<cmdline>" [mem-MiB]
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ZERO_PAGE 0x7000
#define CMDLINE 0x20000
#define PML4 0x9000
#define PDPT 0xa000
#define PD 0xb000
#define GDT 0x500
#define KERNEL 0x100000

static void die(const char *what)
{
    fprintf(stderr, "boot64: %s: %s\n", what, strerror(errno));
    exit(125);
}

static int xioctl(int fd, unsigned long req, void *arg, const char *what)
{
    int r = ioctl(fd, req, arg);
    if (r < 0)
        die(what);
    return r;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die(path);
    uint8_t *buf = malloc((size_t)st.st_size);
    if (!buf || read(fd, buf, (size_t)st.st_size) != st.st_size)
        die(path);
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

static void put_e820(uint8_t *zp, int i, uint64_t addr, uint64_t size, uint32_t type)
{
    uint8_t *e = zp + 0x2d0 + i * 20;
    memcpy(e, &addr, 8);
    memcpy(e + 8, &size, 8);
    memcpy(e + 16, &type, 4);
}

static void set_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int code64)
{
    memset(s, 0, sizeof *s);
    s->selector = sel;
    s->limit = 0xffffffff;
    s->type = type;
    s->present = 1;
    s->s = 1;
    s->g = 1;
    s->l = code64;
    s->db = !code64;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: boot64 <bzImage> <cmdline> [mem-MiB]\n");
        return 125;
    }
    uint64_t mem_size = (argc > 3 ? strtoull(argv[3], NULL, 0) : 128) << 20;
    size_t len;
    uint8_t *img = read_file(argv[1], &len);
    if (len < 0x1000 || memcmp(img + 0x202, "HdrS", 4) != 0) {
        fprintf(stderr, "boot64: %s is not a bzImage\n", argv[1]);
        return 125;
    }
    uint16_t version = (uint16_t)(img[0x206] | img[0x207] << 8);
    if (version < 0x20c || !(img[0x236] & 1)) {
        fprintf(stderr, "boot64: need boot protocol >= 2.12 with XLF_KERNEL_64\n");
        return 125;
    }
    unsigned setup_sects = img[0x1f1] ? img[0x1f1] : 4;
    size_t pm_off = (setup_sects + 1) * 512;
    uint32_t init_size;
    memcpy(&init_size, img + 0x260, 4);

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        die("/dev/kvm");
    int vm = xioctl(kvm, KVM_CREATE_VM, 0, "KVM_CREATE_VM");
    xioctl(vm, KVM_SET_TSS_ADDR, (void *)0xfffbd000UL, "KVM_SET_TSS_ADDR");
    xioctl(vm, KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP");
    struct kvm_pit_config pit = { .flags = 0 };
    xioctl(vm, KVM_CREATE_PIT2, &pit, "KVM_CREATE_PIT2");

    uint8_t *ram = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ram == MAP_FAILED)
        die("mmap");
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = mem_size, .userspace_addr = (uint64_t)ram,
    };
    xioctl(vm, KVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION");

    if (KERNEL + (uint64_t)init_size > mem_size || len - pm_off > init_size) {
        fprintf(stderr, "boot64: kernel does not fit\n");
        return 125;
    }
    memcpy(ram + KERNEL, img + pm_off, len - pm_off);

    uint8_t *zp = ram + ZERO_PAGE;
    size_t hdr_end = 0x202 + img[0x201];
    memcpy(zp + 0x1f1, img + 0x1f1, hdr_end - 0x1f1);
    zp[0x210] = 0xff;                                   /* type_of_loader: undefined */
    uint32_t cmd = CMDLINE;
    memcpy(zp + 0x228, &cmd, 4);
    strncpy((char *)ram + CMDLINE, argv[2], 4095);
    put_e820(zp, 0, 0, 0x9fc00, 1);
    put_e820(zp, 1, 0x9fc00, 0x60400, 2);
    put_e820(zp, 2, KERNEL, mem_size - KERNEL, 1);
    zp[0x1e8] = 3;

    /* Identity map of the first GiB in 2 MiB pages; GDT with __BOOT_CS 0x10, __BOOT_DS 0x18. */
    uint64_t *pml4 = (uint64_t *)(ram + PML4), *pdpt = (uint64_t *)(ram + PDPT), *pd = (uint64_t *)(ram + PD);
    pml4[0] = PDPT | 3;
    pdpt[0] = PD | 3;
    for (uint64_t i = 0; i < 512; i++)
        pd[i] = (i << 21) | 0x83;
    uint64_t *gdt = (uint64_t *)(ram + GDT);
    gdt[2] = 0x00af9b000000ffffULL;
    gdt[3] = 0x00cf93000000ffffULL;

    int vcpu = xioctl(vm, KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU");
    int run_size = xioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        die("mmap kvm_run");

    struct { struct kvm_cpuid2 c; struct kvm_cpuid_entry2 e[256]; } cpuid = { .c.nent = 256 };
    xioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid, "KVM_GET_SUPPORTED_CPUID");
    xioctl(vcpu, KVM_SET_CPUID2, &cpuid, "KVM_SET_CPUID2");

    struct kvm_sregs sregs;
    xioctl(vcpu, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
    set_seg(&sregs.cs, 0x10, 11, 1);
    set_seg(&sregs.ds, 0x18, 3, 0);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    sregs.gdt.base = GDT;
    sregs.gdt.limit = 4 * 8 - 1;
    sregs.cr0 = 0x80000011;                             /* PG | ET | PE */
    sregs.cr3 = PML4;
    sregs.cr4 = 0x20;                                   /* PAE */
    sregs.efer = 0x500;                                 /* LME | LMA */
    xioctl(vcpu, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
    struct kvm_regs regs = { .rip = KERNEL + 0x200, .rsi = ZERO_PAGE, .rflags = 2, .rsp = 0x8000 };
    xioctl(vcpu, KVM_SET_REGS, &regs, "KVM_SET_REGS");

    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR)
                continue;
            die("KVM_RUN");
        }
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint8_t *data = (uint8_t *)run + run->io.data_offset;
            uint16_t port = run->io.port;
            if (run->io.direction == KVM_EXIT_IO_OUT) {
                for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
                    if (port == 0x3f8) {
                        fputc(data[0], stdout);
                        fflush(stdout);
                    } else if (port == 0xf4) {
                        return data[0];
                    }
                }
            } else {
                uint8_t v = 0xff;
                if (port == 0x3fd)
                    v = 0x60;                           /* LSR: transmitter empty */
                else if (port == 0x3fa)
                    v = 0x01;                           /* IIR: no interrupt, no FIFO */
                memset(data, v, (size_t)run->io.size * run->io.count);
            }
            break;
        }
        case KVM_EXIT_MMIO:
            if (!run->mmio.is_write)
                memset(run->mmio.data, 0xff, run->mmio.len);
            break;
        case KVM_EXIT_HLT:
            fprintf(stderr, "boot64: guest halted\n");
            return 124;
        default:
            fprintf(stderr, "boot64: unexpected exit reason %u\n", run->exit_reason);
            return 125;
        }
    }
}
