/* The chat page served at GET /, linked into the binary. */
    .section .rodata
    .global elliott_chat_page_start
elliott_chat_page_start:
    .incbin "src/server/chat_page.html"
    .global elliott_chat_page_end
elliott_chat_page_end:
    .section .note.GNU-stack,"",@progbits
