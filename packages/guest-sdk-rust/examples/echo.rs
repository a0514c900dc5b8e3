// A minimal ftvm guest in Rust: greets, echoes, and logs a count every second.
struct Echo {
    bytes: u64, // state: lives in linear memory, checkpointed
}

impl ftvm::Guest for Echo {
    fn init(&mut self) {
        ftvm::timer_after_ms(1000, 1);
    }
    fn open(&mut self, conn: i32) {
        ftvm::send(conn, b"hello\n");
    }
    fn data(&mut self, conn: i32, data: &[u8]) {
        self.bytes += data.len() as u64;
        ftvm::send(conn, data);
    }
    fn timer(&mut self, _tag: i32) {
        ftvm::log(ftvm::LOG_INFO, &format!("echoed {} bytes so far", self.bytes));
        ftvm::timer_after_ms(1000, 1);
    }
}

ftvm::guest!(Echo, Echo { bytes: 0 });
