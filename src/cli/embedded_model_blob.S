/* The default model's bytes; 32-byte aligned, as GGUF tensor data expects. */
    .section .rodata
    .balign 64
    .global elliott_embedded_model_start
elliott_embedded_model_start:
    .incbin "models/stories260K.gguf"
    .global elliott_embedded_model_end
elliott_embedded_model_end:
    .section .note.GNU-stack,"",@progbits
