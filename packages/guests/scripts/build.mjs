// placeholder, replaced by the guests build
console.log('guests: nothing to build yet');
