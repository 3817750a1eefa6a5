/* Cortex-M55 start-up for the QEMU oracle (mps3-an547): vector table, reset handler, fault report.
   Reset: copy .data from its load address, zero .bss, enable the FPU and MVE (CPACR CP10/CP11 full
   access), open the semihosting handles, run the C constructors, call main, exit through semihosting.
   A fault prints its name and the stacked PC over semihosting and exits with status 3. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern uint32_t __data_load, __data_start, __data_end, __bss_start__, __bss_end__, __stack_top;
extern int main(void);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);

void Reset_Handler(void);
static void fault_handler(void);
static void default_handler(void);

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_CCR (*(volatile uint32_t *)0xE000ED14u)

__attribute__((section(".vectors"), used)) const void *const vector_table[16 + 32] = {
    &__stack_top, (void *)Reset_Handler,
    (void *)default_handler,  /* NMI */
    (void *)fault_handler,    /* HardFault */
    (void *)fault_handler,    /* MemManage */
    (void *)fault_handler,    /* BusFault */
    (void *)fault_handler,    /* UsageFault */
    (void *)fault_handler,    /* SecureFault */
    0, 0, 0,
    (void *)default_handler,  /* SVC */
    (void *)default_handler,  /* DebugMon */
    0,
    (void *)default_handler,  /* PendSV */
    (void *)default_handler,  /* SysTick */
};

void Reset_Handler(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end) *dst++ = *src++;
    for (dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
    SCB_CPACR |= (0xFu << 20);          /* CP10, CP11: FPU and MVE, privileged and user */
    SCB_CCR |= (1u << 4);               /* DIV_0_TRP: integer division by zero faults */
    __asm volatile("dsb\n\tisb" ::: "memory");
    initialise_monitor_handles();
    __libc_init_array();
    exit(main());
}

static void fault_handler(void)
{
    uint32_t *sp;
    __asm volatile("mrs %0, msp" : "=r"(sp));
    uint32_t cfsr = *(volatile uint32_t *)0xE000ED28u;
    fprintf(stderr, "m55: fault, CFSR=0x%08lx, PC=0x%08lx\n", (unsigned long)cfsr, (unsigned long)sp[6]);
    exit(3);
}

static void default_handler(void)
{
    fprintf(stderr, "m55: unexpected exception\n");
    exit(3);
}

/* newlib hooks not provided by librdimon for this bare-metal image */
void _init(void) {}
void _fini(void) {}
